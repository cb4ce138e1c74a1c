"""``paintbridge install krita|gimp``: lay the host plugins into the hosts, with a manifest so
``--uninstall`` removes exactly what was installed."""
