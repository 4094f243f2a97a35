"""Shared defaults for P2C2R (the seed's network_config.py). Edit the package module; this file mirrors it."""

from p2c2r.network_config import *  # noqa: F403
from p2c2r.network_config import KIND_TERMS, terms_for  # noqa: F401
