"""Which width ``d`` each junction of the residual stream keeps.

Junctions are the points where the residual stream is rotated and sliced: after the
embeddings, in the middle of every sequential block (between attention and MLP),
and at the end of every block. Names: ``"embeddings"``, ``"layer.<i>.mid"``,
``"layer.<i>.out"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from theory.architecture import ArchitectureFacts, BlockKind
from theory.counts import kept_dim_from_sparsity as _theory_kept_dim


def kept_dim_from_sparsity(hidden_size: int, sparsity: float, *, round_to: int = 8) -> int:
    """SliceGPT's ``d = int((1 - s) * D)`` rounded down to a multiple of ``round_to``.

    The single definition lives in :func:`theory.counts.kept_dim_from_sparsity`.

    Examples
    --------
    >>> kept_dim_from_sparsity(576, 0.25)
    432
    >>> kept_dim_from_sparsity(576, 0.3)
    400
    >>> kept_dim_from_sparsity(576, 0.3, round_to=1)
    403
    """
    return _theory_kept_dim(hidden_size, sparsity, round_to)


def junction_names(num_layers: int, block_kind: BlockKind) -> list[str]:
    """Junction names in stream order."""
    names = ["embeddings"]
    for i in range(num_layers):
        if block_kind == "sequential":
            names.append(f"layer.{i}.mid")
        names.append(f"layer.{i}.out")
    return names


@dataclass(frozen=True)
class SlicingSchedule:
    """Kept width at every junction.

    Attributes
    ----------
    hidden_size : original width ``D``.
    block_kind : ``"sequential"`` or ``"parallel"``.
    embedding_dim : width after the embeddings (input of layer 0).
    mid_dims : width between attention and MLP of each layer (empty for parallel).
    out_dims : width at the end of each layer; the last one feeds the head.
    slice_head : whether the head reads a sliced stream. When ``False`` the last
        entry of ``out_dims`` must equal ``hidden_size``.
    """

    hidden_size: int
    block_kind: BlockKind
    embedding_dim: int
    mid_dims: tuple[int, ...]
    out_dims: tuple[int, ...]
    slice_head: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "mid_dims", tuple(int(d) for d in self.mid_dims))
        object.__setattr__(self, "out_dims", tuple(int(d) for d in self.out_dims))
        n = len(self.out_dims)
        if n == 0:
            raise ValueError("a schedule needs at least one layer")
        expected_mid = n if self.block_kind == "sequential" else 0
        if len(self.mid_dims) != expected_mid:
            raise ValueError(
                f"{self.block_kind} blocks need {expected_mid} mid dims, got {len(self.mid_dims)}"
            )
        for name, dim in self.dims().items():
            if not 1 <= dim <= self.hidden_size:
                raise ValueError(f"{name}: kept dim {dim} outside [1, {self.hidden_size}]")
        if not self.slice_head and self.out_dims[-1] != self.hidden_size:
            raise ValueError(
                "without head slicing the last layer writes the full width "
                f"{self.hidden_size}, got {self.out_dims[-1]}"
            )

    # ------------------------------------------------------------ builders
    @classmethod
    def constant(
        cls,
        kept_dim: int,
        *,
        hidden_size: int,
        num_layers: int,
        block_kind: BlockKind = "sequential",
        slice_head: bool = False,
    ) -> SlicingSchedule:
        """The same ``d`` everywhere (the SliceGPT default)."""
        return cls.per_layer(
            [kept_dim] * num_layers,
            hidden_size=hidden_size,
            block_kind=block_kind,
            slice_head=slice_head,
        )

    @classmethod
    def per_layer(
        cls,
        layer_dims: Sequence[int],
        *,
        hidden_size: int,
        block_kind: BlockKind = "sequential",
        slice_head: bool = False,
    ) -> SlicingSchedule:
        """Layer ``l`` works at width ``layer_dims[l]``.

        Its input and middle junctions keep ``layer_dims[l]``; its output keeps
        ``layer_dims[l + 1]`` (the next layer's width), and the last layer writes
        ``D`` or, with ``slice_head``, ``layer_dims[-1]``. This is the layout of the
        reference's forward slicing schedulers.
        """
        dims = [int(d) for d in layer_dims]
        last = dims[-1] if slice_head else hidden_size
        return cls(
            hidden_size=hidden_size,
            block_kind=block_kind,
            embedding_dim=dims[0],
            mid_dims=tuple(dims) if block_kind == "sequential" else (),
            out_dims=(*dims[1:], last),
            slice_head=slice_head,
        )

    @classmethod
    def for_facts(
        cls,
        facts: ArchitectureFacts,
        *,
        kept_dim: int | Sequence[int] | None = None,
        sparsity: float | None = None,
        round_to: int = 8,
        slice_head: bool = False,
    ) -> SlicingSchedule:
        """Constant (or per-layer, if ``kept_dim`` is a sequence) schedule for a model.

        Exactly one of ``kept_dim`` and ``sparsity`` must be given; ``sparsity`` goes
        through :func:`kept_dim_from_sparsity`.
        """
        if (kept_dim is None) == (sparsity is None):
            raise ValueError("give exactly one of kept_dim and sparsity")
        if sparsity is not None:
            kept_dim = kept_dim_from_sparsity(facts.hidden_size, sparsity, round_to=round_to)
        if isinstance(kept_dim, int):
            kept_dim = [kept_dim] * facts.num_layers
        if len(kept_dim) != facts.num_layers:
            raise ValueError(f"need {facts.num_layers} per-layer dims, got {len(kept_dim)}")
        return cls.per_layer(
            kept_dim,
            hidden_size=facts.hidden_size,
            block_kind=facts.block_kind,
            slice_head=slice_head,
        )

    # ------------------------------------------------------------- queries
    @property
    def num_layers(self) -> int:
        return len(self.out_dims)

    def input_dim(self, layer: int) -> int:
        """Width of the stream entering ``layer``."""
        return self.embedding_dim if layer == 0 else self.out_dims[layer - 1]

    def mid_dim(self, layer: int) -> int:
        return self.mid_dims[layer] if self.block_kind == "sequential" else self.out_dims[layer]

    def out_dim(self, layer: int) -> int:
        return self.out_dims[layer]

    @property
    def head_dim(self) -> int:
        """Width the head reads."""
        return self.out_dims[-1]

    @property
    def kept_dim(self) -> int | None:
        """The common ``d`` of a constant schedule, else ``None``."""
        inner = {self.embedding_dim, *self.mid_dims, *self.out_dims[:-1]}
        if self.slice_head:
            inner.add(self.out_dims[-1])
        return inner.pop() if len(inner) == 1 else None

    def dims(self) -> dict[str, int]:
        """Kept width per junction name, in stream order."""
        out = {"embeddings": self.embedding_dim}
        for i in range(self.num_layers):
            if self.block_kind == "sequential":
                out[f"layer.{i}.mid"] = self.mid_dims[i]
            out[f"layer.{i}.out"] = self.out_dims[i]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "hidden_size": self.hidden_size,
            "block_kind": self.block_kind,
            "embedding_dim": self.embedding_dim,
            "mid_dims": list(self.mid_dims),
            "out_dims": list(self.out_dims),
            "slice_head": self.slice_head,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SlicingSchedule:
        return cls(
            hidden_size=int(data["hidden_size"]),
            block_kind=data["block_kind"],
            embedding_dim=int(data["embedding_dim"]),
            mid_dims=tuple(data["mid_dims"]),
            out_dims=tuple(data["out_dims"]),
            slice_head=bool(data["slice_head"]),
        )
