"""The .deb recipes of the MongoDB double (real package names and layout)."""
