"""Issuing certificates: the built-in platform CA, ACME, and when to renew what was issued.

`ca` and `renewal` are pure: they take keys, names and an explicit ``at`` and return
values. `acme` talks to an ACME CA over the network. `certward.services.platform_ca`,
`certward.services.managed` and `certward.services.acme_issuing` add the database,
the secret store and the clock.
"""
