"""BackDown: back up local folders to an SMB share and restore them."""

__version__ = "0.1.0"
