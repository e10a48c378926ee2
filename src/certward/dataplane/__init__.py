"""The data plane: serving incoming HTTPS for every hostname the platform knows.

`state` is the pure value the data plane runs on (hostnames, certificates, access
rules), `access` decides each request from it, `gateway` is the embedded TLS gateway
and `nginx` renders the same behaviour for Debian's nginx. Nothing here imports the
database or the services: `certward.services.dataplane_feed` builds the state.
"""
