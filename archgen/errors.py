"""The one error a user sees for bad input: a spec, a knob or a setting that cannot be built."""


class SpecError(ValueError):
    """A spec or setting is malformed. The message names the file, the row and the field.

    The CLI prints the message alone (no traceback) and exits with status 2.
    """
