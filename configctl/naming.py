"""The label value that identifies a parameter on ConfigRefresh objects: the operator's own function.

Imported rather than copied, so configctl and the operator can never disagree on the hash.
"""

from __future__ import annotations

from refresh_operator.naming import parameter_hash, refresh_name

__all__ = ["parameter_hash", "refresh_name"]
