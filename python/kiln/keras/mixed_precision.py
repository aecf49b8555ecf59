"""kiln.keras.mixed_precision: Keras' global dtype policy.

    import kiln as tf
    tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")

Under "mixed_bfloat16", matmul and conv2d (forward and both gradients, and their fused forms)
round their float32 inputs to bfloat16 and accumulate in float32; variables, losses, optimizer
state and every other op stay float32, as in Keras. Tensors stay float32: the rounding happens
inside the kernels, so models, saved files and graphs are the same under both policies. The
policy is process-wide; traced functions retrace when it changes. A CPU without AVX512_BF16 or
AMX-BF16 refuses "mixed_bfloat16" with a ValueError naming the missing feature.
"""

from kiln import _kiln

_COMPUTE = {"float32": "float32", "mixed_bfloat16": "bfloat16"}


class Policy:
    """A dtype policy by Keras name: "float32" or "mixed_bfloat16" ("mixed_float16" is not
    offered: kiln's CPU kernels have no float16 path)."""

    def __init__(self, name):
        if not isinstance(name, str) or name not in _COMPUTE:
            raise _kiln.ValueError(
                f"Policy: unknown dtype policy {name!r} (kiln has 'float32' and 'mixed_bfloat16')")
        self._name = name

    @property
    def name(self):
        return self._name

    @property
    def compute_dtype(self):
        """The dtype matmul and conv compute in: "float32" or "bfloat16"."""
        return _COMPUTE[self._name]

    @property
    def variable_dtype(self):
        """Variables stay float32 under every policy."""
        return "float32"

    def __eq__(self, other):
        return isinstance(other, Policy) and other._name == self._name

    def __hash__(self):
        return hash(self._name)

    def __repr__(self):
        return f'<Policy "{self._name}">'


def set_global_policy(policy):
    """Sets the process-wide policy from a Policy or its name. Raises ValueError for an unknown
    name, or for "mixed_bfloat16" on a CPU without bfloat16 support (the policy is then
    unchanged)."""
    name = policy.name if isinstance(policy, Policy) else Policy(policy).name
    _kiln._set_dtype_policy(name)


def global_policy():
    """The process-wide Policy (Policy("float32") until set_global_policy)."""
    return Policy(_kiln._dtype_policy())


def bfloat16_supported():
    """Whether this CPU can run "mixed_bfloat16" (kiln's addition: Keras has no such query)."""
    return _kiln._bf16_unsupported_reason() == ""
