"""Runtime bundles: the files of an applied version (`files`, pure), sealed on disk one
immutable directory per version (`store`), and put in place beside an app (`install`)."""
