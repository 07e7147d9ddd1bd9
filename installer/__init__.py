"""Build steps for hostnet's packages and the micro-VM image (run as ``python -m installer.X``)."""
