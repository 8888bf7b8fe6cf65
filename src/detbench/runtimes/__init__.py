"""Runtimes stage: the backend protocol and registry, exporters, the artifact store, pre/post-processing."""
