"""Coding: Elias bit streams, message protocols, the bit ledger and exact expected lengths (THEORY §3)."""

from .elias import CODES, code_length
from .elias import decode as decode_ints
from .elias import encode as encode_ints
from .errors import DecodeError
from .expected import (
    entropy_bits_of_intervals,
    entropy_floor,
    expected_bits,
    expected_bits_of_intervals,
    expected_gap_bits,
    fixed_width_bits,
    qsgd_dense_bound,
    qsgd_sparse_bound,
    tight_expected_dense_bits,
)
from .ledger import CATEGORIES, BitLedger
from .protocol import MAX_D, MAX_TYPES, Decoder, Encoder, Message, decode, encode, fixed_bits

__all__ = [
    "MAX_D",
    "MAX_TYPES",
    "CATEGORIES",
    "CODES",
    "BitLedger",
    "DecodeError",
    "Decoder",
    "Encoder",
    "Message",
    "code_length",
    "decode",
    "decode_ints",
    "encode",
    "encode_ints",
    "entropy_bits_of_intervals",
    "entropy_floor",
    "expected_bits",
    "expected_bits_of_intervals",
    "expected_gap_bits",
    "fixed_bits",
    "fixed_width_bits",
    "qsgd_dense_bound",
    "qsgd_sparse_bound",
    "tight_expected_dense_bits",
]
