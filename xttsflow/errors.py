"""The one exception type users see: it names the input, the problem and the fix."""


class XttsflowError(Exception):
    """A problem with the user's input or configuration, worded for the user."""
