"""Parameter and FLOP counts against numbers worked out by hand.

Llama-3-8B (D=4096, L=32, H=32, KV=8, hd=128, I=14336, V=128256; gated, RMSNorm,
untied, no biases), dense:
    embedding and head      2 * 128256 * 4096                    = 1,050,673,152
    per layer: q,k,v        4096 * (32 + 2*8) * 128              =    25,165,824
               o            4096 * 4096                          =    16,777,216
               gate, up     4096 * 2 * 14336                     =   117,440,512
               down         14336 * 4096                         =    58,720,256
               two norms    2 * 4096                             =         8,192
               layer total                                       =   218,112,000
    32 layers                                                    = 6,979,584,000
    final norm                                                   =         4,096
    total                                                        = 8,030,261,248
Sliced at d = 3072, head not sliced:
    embedding               128256 * 3072                        =   394,002,432
    layers 0..30: linears   3072 * (6144 + 4096 + 28672 + 14336) =   163,577,856
                  shortcuts 2 * 3072^2                           =    18,874,368
                  31 layers * 182,452,224                        = 5,656,018,944
    layer 31: linears       3072 * (6144 + 4096 + 28672) + 14336 * 4096
                                                                 =   178,257,920
              shortcuts     3072^2 + 3072 * 4096                 =    22,020,096
    head                    128256 * 4096                        =   525,336,576
    total                                                        = 6,775,635,968
"""

from __future__ import annotations

import math

import pytest
import sympy as sp

from theory import (
    LLAMA3_8B,
    PHI3_MINI,
    SMOLLM2_135M,
    ArchitectureFacts,
    break_even_kept_dim,
    dense_flops_per_token,
    dense_parameter_count,
    kept_dim_from_sparsity,
    parameter_breakdown,
    sliced_flops_per_token,
    sliced_parameter_count,
    sliced_parameter_polynomial,
    sparsity_from_kept_dim,
)
from theory.counts import junction_count, junction_widths, sliced_flops_polynomial
from theory.symbols import context_length, kept_dim


def test_llama3_8b_dense_and_sliced_counts() -> None:
    assert dense_parameter_count(LLAMA3_8B) == 8_030_261_248
    assert sliced_parameter_count(LLAMA3_8B, 3072) == 6_775_635_968
    assert kept_dim_from_sparsity(4096, 0.25) == 3072
    assert LLAMA3_8B.parameter_count() == 8_030_261_248
    assert LLAMA3_8B.sliced_parameter_count(3072) == 6_775_635_968


def test_llama3_8b_sliced_head() -> None:
    # Slicing the head too changes, relative to the default: head 128256*(4096-3072),
    # last down projection 14336*(4096-3072), last shortcut 3072*(4096-3072).
    saved = (128256 + 14336 + 3072) * 1024
    assert sliced_parameter_count(LLAMA3_8B, 3072, slice_head=True) == 6_775_635_968 - saved


def test_phi3_mini_dense_count() -> None:
    # per layer: qkv 3072*96*96 = 28,311,552; o 3072^2 = 9,437,184; gate_up
    # 3072*16384 = 50,331,648; down 8192*3072 = 25,165,824; norms 6,144
    # -> 113,252,352; * 32 = 3,624,075,264; + embedding and head 2*32064*3072
    # = 197,001,216; + final norm 3,072 = 3,821,079,552.
    assert dense_parameter_count(PHI3_MINI) == 3_821_079_552


def test_smollm2_dense_count_and_cloned_head() -> None:
    # per layer: q 576^2 = 331,776; k,v 2*576*192 = 221,184; o 331,776; gate,up
    # 2*576*1536 = 1,769,472; down 884,736; norms 1,152 -> 3,540,096; * 30 =
    # 106,202,880; + tied embedding 49152*576 = 28,311,552; + final norm 576.
    assert dense_parameter_count(SMOLLM2_135M) == 134_515_008
    assert kept_dim_from_sparsity(576, 0.1) == 512
    # The sliced model's head is an untied copy at full width 576.
    assert parameter_breakdown(SMOLLM2_135M, 512)["head"] == 49152 * 576
    assert parameter_breakdown(SMOLLM2_135M, 512)["embedding"] == 49152 * 512


# A Phi-2-like toy: parallel blocks, LayerNorm, biases everywhere, plain MLP, untied.
PARALLEL = ArchitectureFacts(
    architecture="PhiForCausalLM",
    hidden_size=8,
    num_layers=2,
    num_attention_heads=2,
    num_key_value_heads=2,
    head_dim=4,
    intermediate_size=16,
    vocab_size=10,
    gated_mlp=False,
    norm_kind="layer",
    block_kind="parallel",
    tied_embeddings=False,
    attention_bias=True,
    attention_output_bias=True,
    mlp_bias=True,
    head_bias=True,
)


def test_parallel_toy_by_hand() -> None:
    # dense: embedding 80; per layer qkv 8*24+24 = 216, out 64+8 = 72, fc1 128+16 = 144,
    # fc2 128+8 = 136, one LayerNorm 16 -> 584, two layers 1168; final norm 16;
    # head 80+10 = 90; total 1354.
    assert dense_parameter_count(PARALLEL) == 1354
    # d = 4, head not sliced: embedding 40.
    # layer 0 (4 -> 4): qkv 4*24+24 = 120, out 8*4+4 = 36, fc1 4*16+16 = 80,
    #   fc2 16*4+4 = 68, shortcut 4*4 = 16 -> 320.
    # layer 1 (4 -> 8): qkv 120, out 8*8+8 = 72, fc1 80, fc2 16*8+8 = 136,
    #   shortcut 4*8 = 32 -> 440.
    # head 8*10+10 = 90. Total 890.
    assert sliced_parameter_count(PARALLEL, 4) == 890
    assert junction_count(PARALLEL) == 3


# An OPT-like toy: learned positions, LayerNorm, biases except on the tied head.
OPT_LIKE = ArchitectureFacts(
    architecture="OPTForCausalLM",
    hidden_size=8,
    num_layers=1,
    num_attention_heads=2,
    num_key_value_heads=2,
    head_dim=4,
    intermediate_size=16,
    vocab_size=10,
    gated_mlp=False,
    norm_kind="layer",
    block_kind="sequential",
    tied_embeddings=True,
    attention_bias=True,
    attention_output_bias=True,
    mlp_bias=True,
    learned_positions=6,
)


def test_opt_like_toy_by_hand() -> None:
    # dense: embeddings (10+6)*8 = 128; layer: qkv 8*24+24 = 216, out 72, fc1 144,
    # fc2 136, two LayerNorms 32 -> 600; final LayerNorm 16; tied head 0. Total 744.
    assert dense_parameter_count(OPT_LIKE) == 744
    # d = 4: embeddings 16*4 = 64; qkv 4*24+24 = 120, out 8*4+4 = 36, fc1 4*16+16 = 80,
    # fc2 16*8+8 = 136 (last layer writes D), shortcuts 4*4 + 4*8 = 48 -> 420;
    # head 8*10 plus the bias created by folding the final LayerNorm's bias: 90.
    assert sliced_parameter_count(OPT_LIKE, 4) == 574


# LayerNorm without any biases: folding creates biases on the linears reading norms.
LAYERNORM_NO_BIAS = ArchitectureFacts(
    architecture="Toy",
    hidden_size=8,
    num_layers=1,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=4,
    intermediate_size=16,
    vocab_size=10,
    gated_mlp=True,
    norm_kind="layer",
    block_kind="sequential",
    tied_embeddings=False,
)


def test_layernorm_folding_creates_biases() -> None:
    # dense: embedding 80; qkv 8*(2+2)*4 = 128; o 64; gate,up 8*32 = 256; down 128;
    # norms 2*16 = 32; final 16; head 80. Total 784.
    assert dense_parameter_count(LAYERNORM_NO_BIAS) == 784
    # d = 4: embedding 40; qkv 4*16 + 16 (folded bias) = 80; o 8*4 = 32;
    # gate,up 4*32 + 32 (folded bias) = 160; down 16*8 = 128; shortcuts 16 + 32 = 48;
    # head 8*10 + 10 (folded bias) = 90. Total 578.
    assert sliced_parameter_count(LAYERNORM_NO_BIAS, 4) == 578


def test_per_junction_schedule() -> None:
    # OPT-like toy, junctions (embedding, after attention, after MLP) = (6, 4, 8).
    # embeddings 16*6 = 96; qkv 6*24+24 = 168; out 8*4+4 = 36; fc1 4*16+16 = 80;
    # fc2 16*8+8 = 136; shortcuts 6*4 + 4*8 = 56; head 8*10+10 = 90. Total 662.
    assert sliced_parameter_count(OPT_LIKE, [6, 4, 8]) == 662
    constant = junction_widths(LLAMA3_8B, 3072)
    assert sliced_parameter_count(LLAMA3_8B, constant) == 6_775_635_968
    with pytest.raises(ValueError, match="needs 65 widths"):
        junction_widths(LLAMA3_8B, [3072] * 64)
    with pytest.raises(ValueError, match="disagrees"):
        junction_widths(LLAMA3_8B, constant, slice_head=True)
    with pytest.raises(ValueError, match=r"lie in \[1, 8\]"):
        sliced_parameter_count(OPT_LIKE, 9)


@pytest.mark.parametrize("facts", [LLAMA3_8B, PHI3_MINI, SMOLLM2_135M, PARALLEL, OPT_LIKE])
def test_polynomial_agrees_with_integer_count(facts: ArchitectureFacts) -> None:
    for slice_head in (False, True):
        poly = sliced_parameter_polynomial(facts, slice_head=slice_head)
        assert poly.degree() == 2
        # Shortcuts: d^2 terms at every junction pair except those touching an
        # unsliced head junction.
        pairs = (2 if facts.block_kind == "sequential" else 1) * facts.num_layers
        assert poly.LC() == pairs - (0 if slice_head else 1)
        for d in (1, 2, facts.hidden_size // 2, facts.hidden_size):
            assert poly.eval(d) == sliced_parameter_count(facts, d, slice_head=slice_head)


def test_llama3_break_even_from_the_quadratic() -> None:
    # sliced(d) = 63 d^2 + 1,821,952 d + 584,056,832 (head not sliced); solve
    # sliced(d) < 8,030,261,248 with the quadratic formula in exact integers.
    poly = sliced_parameter_polynomial(LLAMA3_8B)
    assert poly.all_coeffs() == [63, 1_821_952, 584_056_832]
    a, b, c = 63, 1_821_952, 584_056_832 - 8_030_261_248
    root = (-b + math.isqrt(b * b - 4 * a * c)) // (2 * a)
    assert break_even_kept_dim(LLAMA3_8B) == root == 3631
    assert sparsity_from_kept_dim(4096, 3631) == pytest.approx(0.1135, abs=1e-4)


def test_small_sparsity_grows_the_model() -> None:
    d = kept_dim_from_sparsity(4096, 0.1)  # int(3686.4) = 3686 -> 3680
    assert d == 3680
    assert sliced_parameter_count(LLAMA3_8B, d) > dense_parameter_count(LLAMA3_8B)
    # A tied model grows by its cloned head too: even s = 0.25 grows SmolLM2.
    assert sliced_parameter_count(SMOLLM2_135M, 432) > dense_parameter_count(SMOLLM2_135M)


def test_kept_dim_from_sparsity_follows_slicegpt() -> None:
    assert kept_dim_from_sparsity(3072, 0.25) == 2304
    assert kept_dim_from_sparsity(4096, 0.0) == 4096
    assert kept_dim_from_sparsity(4096, 0.3) == 2864  # int(2867.2) = 2867 -> 2864
    assert kept_dim_from_sparsity(576, 0.1, multiple=1) == 518
    with pytest.raises(ValueError):
        kept_dim_from_sparsity(4096, 1.0)
    with pytest.raises(ValueError):
        kept_dim_from_sparsity(8, 0.5, multiple=8)


def test_flops_by_hand() -> None:
    # SmolLM2 dense: matmul weights excluding the embedding lookup, tied head included:
    # 30 * (331,776 + 221,184 + 331,776 + 1,769,472 + 884,736) + 28,311,552
    # = 134,479,872; times 2 = 268,959,744. Attention 4 * n * 9 * 64 * 30 = 69,120 n.
    n = context_length
    assert dense_flops_per_token(SMOLLM2_135M) == 268_959_744 + 69_120 * n
    assert dense_flops_per_token(SMOLLM2_135M, 100) == 268_959_744 + 6_912_000
    # Llama-3-8B dense: 2 * (8,030,261,248 - 525,336,576 embedding - 65 * 4096 norms)
    # = 15,009,316,864; attention 4 * 32 * 128 * 32 = 524,288 per attended position.
    assert dense_flops_per_token(LLAMA3_8B, 1) == 15_009_316_864 + 524_288


@pytest.mark.parametrize("facts", [LLAMA3_8B, PHI3_MINI, SMOLLM2_135M])
def test_sliced_flops_are_twice_the_matmul_parameters(facts: ArchitectureFacts) -> None:
    # Bias-free models: every sliced parameter except the embedding is a matmul weight.
    attention = 4 * facts.num_attention_heads * facts.head_dim * facts.num_layers
    for d in (facts.hidden_size // 4, facts.hidden_size):
        matmul = sliced_parameter_count(facts, d) - facts.vocab_size * d
        assert sliced_flops_per_token(facts, d, 7) == 2 * matmul + 7 * attention
    poly = sliced_flops_polynomial(facts)
    assert poly.eval({kept_dim: 100, context_length: 3}) == sliced_flops_per_token(facts, 100, 3)
    assert sp.Poly(sliced_flops_per_token(facts, kept_dim), kept_dim).degree() == 2
