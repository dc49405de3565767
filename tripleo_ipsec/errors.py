"""The one exception the CLI turns into a single line on stderr."""


class Error(Exception):
    """Bad input or a failed step, said in one line an operator can act on.

    The message must never carry key material: callers name files, hosts,
    networks and addresses, never a secret.
    """
