"""Development tools for the Pintu source tree (not installed with the package)."""
