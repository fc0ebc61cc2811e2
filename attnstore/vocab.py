"""The words a store's values and the commands' choices are made of, declared once.

A light module (no imports): the command line reads its choices here without loading torch or
scikit-learn, the analysis and extraction check their arguments against the same tuples, and
readers refuse a stored value outside its domain.
"""

from __future__ import annotations

# Row views of an analysis (attnstore/analysis/views.py says what each keeps).
VIEWS = ("per_example", "raw", "shared_keys")
DEFAULT_VIEW = "shared_keys"  # removes the causal-position artefact (docs/analysis.md)
# The query rows an analysis clusters: x tokens (even query_pos) or y tokens (odd).
QUERY_KINDS = ("x", "y")
# Clustering backends: scikit-learn (the reference) or torch (batched, CPU or GPU).
BACKENDS = ("sklearn", "torch")
DEFAULT_BACKEND = "torch"  # at parity with the sklearn reference (docs/measurements.md)
# How attention.weights are stored: float32 (exact) or rounded through float16.
PRECISIONS = ("float32", "float16")
# The per-head metrics a map shows (plot heads --metric, the report's maps): columns of the
# head_summary view, then of the head_effect_summary view (attnstore intervene makes those).
HEAD_METRICS = (
    "mean_silhouette",
    "median_silhouette",
    "modal_k",
    "modal_k_share",
    "mean_svm_accuracy",
    "mean_nmi_y",
    "mean_eta2_point",
    "literal_precision",
    "literal_recall",
    "chance_precision",
    "precision_lift",
)
EFFECT_METRICS = (
    "mean_delta_accuracy",
    "late_delta_accuracy",
    "worst_delta_accuracy",
    "mean_delta_logit",
    "late_delta_logit",
)
# What `attnstore intervene` does to a head (attnstore/interventions.py says how).
INTERVENTION_METHODS = ("zero", "mean", "resample", "knockout")
Z_TARGET = "z"  # the target of zero, mean and resample: the head's whole z
# Knockout targets: the (query kind, key kind) attention entries removed, one place.
KNOCKOUT_TARGETS = {
    "x_to_y_pos": "x queries -> y tokens whose label is +1",
    "x_to_y_neg": "x queries -> y tokens whose label is -1",
    "x_to_y": "x queries -> every y token",
    "x_to_x": "x queries -> every x token (their own included)",
    "y_to_y": "y queries -> every y token (their own included)",
    "y_to_x": "y queries -> every x token",
}
# The corruptions `attnstore patch` pairs with each clean prompt (attnstore/corruptions.py says
# how): only labels change, so the two prompts differ at y tokens only.
CORRUPTIONS = {
    "flip_label": "the label of the k-th positive example (from 0) flipped to -1",
    "swap_function": "every label recomputed with the hidden function of the next prompt",
    "drop_literal": "every label recomputed with the k-th literal of the conjunction dropped",
}
# What an activation patch replaces in a head, and what a path patch's receiver reads anew.
PATCH_TARGETS = ("z", "q", "k", "v")
PATH_INPUTS = ("q", "k", "v")
# The components of a direct logit attribution (attnstore/attribution.py), in stored order.
ATTRIBUTION_COMPONENTS = (
    "attn_bias",
    "embed_bias",
    "final_norm_bias",
    "head",
    "mlp",
    "mlp_bias",
    "position",
    "token",
)
