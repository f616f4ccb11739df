"""The shape of a model's KV cache, as seqkv stores it.

A `Layout` names what the proto's `Layout` holds: layers, KV heads, head_dim,
the element dtype ("bf16", "fp16", "fp32"), whether the model keeps one
latent tensor per layer (MLA) instead of K and V, and its RoPE convention.
"""

import dataclasses

import numpy as np

from . import errors

# dtype name -> (proto enum value, bytes per element, numpy dtype of the
# stored bits). bf16 has no numpy dtype: its bits travel as uint16.
DTYPES = {
    "bf16": (1, 2, np.dtype("<u2")),
    "fp16": (2, 2, np.dtype("<f2")),
    "fp32": (3, 4, np.dtype("<f4")),
}
_DTYPE_BY_ENUM = {value[0]: name for name, value in DTYPES.items()}

ROPE_STYLES = {"none": 0, "rotate_half": 1, "interleaved": 2}
_ROPE_BY_ENUM = {value: name for name, value in ROPE_STYLES.items()}


@dataclasses.dataclass(frozen=True)
class Rope:
    """RoPE of the keys: style "rotate_half" (HF Llama), "interleaved"
    (GPT-J) or "none" (not rotated, or not said); rotary_dim 0 means
    head_dim."""

    style: str = "none"
    theta: float = 10000.0
    rotary_dim: int = 0

    @classmethod
    def parse(cls, spec):
        """"rotate_half:500000", "interleaved:10000", "none"."""
        style, _, theta = spec.partition(":")
        if style not in ROPE_STYLES:
            raise errors.InvalidArgumentError(
                f"rope style {style!r} is not one of {sorted(ROPE_STYLES)}")
        try:
            return cls(style, float(theta) if theta else 10000.0)
        except ValueError:
            raise errors.InvalidArgumentError(
                f"rope theta {theta!r} is not a number") from None


@dataclasses.dataclass(frozen=True)
class Layout:
    num_layers: int
    num_kv_heads: int
    head_dim: int
    dtype: str = "bf16"
    latent: bool = False
    rope: Rope = Rope()

    def __post_init__(self):
        for field in ("num_layers", "num_kv_heads", "head_dim"):
            value = getattr(self, field)
            if not isinstance(value, (int, np.integer)) or value <= 0:
                raise errors.InvalidArgumentError(
                    f"layout {field} must be a positive integer, got {value!r}")
        if self.dtype not in DTYPES:
            raise errors.InvalidArgumentError(
                f"layout dtype {self.dtype!r} is not one of {sorted(DTYPES)}")
        if self.rope.style not in ROPE_STYLES:
            raise errors.InvalidArgumentError(
                f"rope style {self.rope.style!r} is not one of "
                f"{sorted(ROPE_STYLES)}")

    @property
    def tensors_per_layer(self):
        return 1 if self.latent else 2

    @property
    def element_size(self):
        return DTYPES[self.dtype][1]

    @property
    def bytes_per_token(self):
        return (self.num_layers * self.tensors_per_layer * self.num_kv_heads *
                self.head_dim * self.element_size)

    @classmethod
    def from_hf_config(cls, config, dtype="bf16"):
        """The layout of a Hugging Face Llama-family config.json (a dict):
        layers, KV heads, head_dim and RoPE theta all come from it."""
        try:
            num_heads = int(config["num_attention_heads"])
            head_dim = int(config.get("head_dim") or
                           int(config["hidden_size"]) // num_heads)
            num_kv_heads = int(config.get("num_key_value_heads") or num_heads)
            num_layers = int(config["num_hidden_layers"])
        except KeyError as missing:
            raise errors.InvalidArgumentError(
                f"config.json has no {missing.args[0]}") from None
        return cls(num_layers, num_kv_heads, head_dim, dtype,
                   rope=Rope("rotate_half", rope_theta(config)))

    def to_proto(self, pb):
        return pb.Layout(
            num_layers=self.num_layers, num_kv_heads=self.num_kv_heads,
            head_dim=self.head_dim, dtype=DTYPES[self.dtype][0],
            latent=self.latent,
            rope=pb.Rope(style=ROPE_STYLES[self.rope.style],
                         theta=self.rope.theta,
                         rotary_dim=self.rope.rotary_dim))

    @classmethod
    def from_proto(cls, message):
        if message.dtype not in _DTYPE_BY_ENUM:
            raise errors.DataLossError(
                f"server sent a layout with dtype {message.dtype}")
        rope = Rope(_ROPE_BY_ENUM.get(message.rope.style, "none"),
                    message.rope.theta or 10000.0, message.rope.rotary_dim)
        try:
            return cls(message.num_layers, message.num_kv_heads,
                       message.head_dim, _DTYPE_BY_ENUM[message.dtype],
                       message.latent, rope)
        except errors.InvalidArgumentError as error:
            raise errors.DataLossError(
                f"server sent a bad layout: {error.message}") from None


def rope_theta(config):
    """RoPE theta of a HF config: `rope_theta`, or `rope_parameters`'s
    (transformers 5), or 10000 as transformers defaults."""
    if "rope_theta" in config:
        return float(config["rope_theta"])
    parameters = config.get("rope_parameters") or {}
    if "rope_theta" in parameters:
        return float(parameters["rope_theta"])
    return 10000.0
