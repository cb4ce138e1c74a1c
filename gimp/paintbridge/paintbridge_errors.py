"""The one exception the plug-in shows to the user as it is (its own module, because the
main script cannot be imported: importing it would start GIMP's plug-in main loop)."""


class PaintbridgeError(Exception):
    """A failure to show the user as it is (the message says what to do)."""
