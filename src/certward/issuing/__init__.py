"""Issuing certificates: the built-in platform CA and when to renew what it issued.

Both modules are pure: they take keys, names and an explicit ``at`` and return values.
`certward.services.platform_ca` and `certward.services.managed` add the database,
the secret store and the clock.
"""
