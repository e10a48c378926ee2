"""Test material: a small PKI, OpenSSL-made variants, hostile files and external tools."""
