"""The linear SVM of the torch backend: ``LinearSVC(multi_class="ovr")``, solved exactly.

The optimum of the primal problem that ``LinearSVC`` solves through liblinear (C = 1, squared
hinge, L2 penalty on the weights *and* the intercept, which is the weight of a constant feature
1), for a batch of problems, found by a generalised Newton method with a backtracking line
search in float64: the objective is strongly convex and piecewise quadratic, so a few iterations
reach it to machine precision, where liblinear stops at its tolerance. The optimum is unique, so
it does not depend on a ``random_state``; its last bits depend on the matrix kernels (the
predictions taken from it use the tie band of ``backends.base``).
"""

from __future__ import annotations

import math

import torch

from attnstore.analysis.backends.base import present_classes


def linear_svc_ovr(
    x: torch.Tensor,
    labels: torch.Tensor,
    n_rows_max: int | None = None,
    fit: torch.Tensor | None = None,
    tol: float = 1e-10,
    max_iter: int = 100,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``LinearSVC(multi_class="ovr").fit(x[p], labels[p])`` for every problem p, solved exactly:
    x of shape (n_problems, n_rows, n_features), labels (n_problems, n_rows) in 0..k-1.

    Returns ``coef`` (n_problems, n_rows_max, n_features) and ``intercept`` (n_problems,
    n_rows_max) as scikit-learn's ``coef_`` / ``intercept_``, NaN-padded: one row, "the second
    class present vs the first", for two classes, one row per present class (in order) for more,
    none for one class or where ``fit`` (n_problems,) is False; then the number of rows
    (n_problems,) and whether Newton's method converged (n_problems,). Float64."""
    P, N, F = x.shape
    dev = x.device
    k = int(labels.max()) + 1 if labels.numel() else 1
    present = present_classes(labels, max(k, 2))  # (P, k)
    n_classes = present.sum(1)
    rank = present.cumsum(1) - 1
    if fit is None:
        fit = torch.ones(P, dtype=torch.bool, device=dev)
    n_rows = torch.where(fit & (n_classes >= 2), torch.where(n_classes == 2, 1, n_classes), 0)
    if n_rows_max is None:
        n_rows_max = max(int(n_rows.max()) if P else 1, 1)
    # One binary problem per coefficient row: class c against the rest.
    wanted = present & (n_rows > 0).unsqueeze(1) & ((n_classes > 2).unsqueeze(1) | (rank == 1))
    p_idx, c_idx = wanted.nonzero(as_tuple=True)
    row = torch.where(n_classes[p_idx] == 2, 0, rank[p_idx, c_idx])
    features = torch.cat([x[p_idx].double(), x.new_ones(len(p_idx), N, 1, dtype=torch.float64)], 2)
    target = torch.where(labels[p_idx] == c_idx.unsqueeze(1), 1.0, -1.0).double()
    w, ok = squared_hinge_svm(features, target, tol=tol, max_iter=max_iter)
    coef = torch.full((P, n_rows_max, F), math.nan, dtype=torch.float64, device=dev)
    intercept = torch.full((P, n_rows_max), math.nan, dtype=torch.float64, device=dev)
    coef[p_idx, row] = w[:, :F]
    intercept[p_idx, row] = w[:, F]
    converged = torch.ones(P, dtype=torch.bool, device=dev)
    converged[p_idx[~ok]] = False
    return coef, intercept, n_rows, converged


def squared_hinge_svm(
    features: torch.Tensor,
    target: torch.Tensor,
    C: float = 1.0,
    tol: float = 1e-10,
    max_iter: int = 100,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise ``w.w / 2 + C * sum_i max(0, 1 - y_i w.x_i)^2`` for a batch of binary problems:
    features (B, N, F) (a constant-1 column for an intercept), target (B, N) in {-1, +1}.

    Generalised Newton: on the rows inside the margin the objective is quadratic with Hessian
    ``I + 2C X'X``; each step solves that system and backtracks (Armijo) until the objective
    falls enough. Returns the weights (B, F) and whether the gradient fell below ``tol`` times its
    size at w = 0 (B,). Problems that have converged leave the batch once they are the majority.
    """
    B, N, F = features.shape
    dtype, dev = features.dtype, features.device
    eye = torch.eye(F, dtype=dtype, device=dev)
    w_out = torch.zeros(B, F, dtype=dtype, device=dev)
    done_out = torch.zeros(B, dtype=torch.bool, device=dev)
    work = torch.arange(B, device=dev)
    w = torch.zeros(B, F, dtype=dtype, device=dev)
    margin = torch.zeros(B, N, dtype=dtype, device=dev)  # X w
    f_w = _svm_objective(w, margin, target, C)
    g0 = None
    for _ in range(max_iter):
        inside = (target * margin < 1).to(dtype)  # (W, N)
        xt = features.transpose(1, 2)  # (W, F, N)
        grad = w + 2 * C * torch.bmm(xt, (inside * (margin - target)).unsqueeze(2)).squeeze(2)
        g_norm = grad.norm(dim=1)
        if g0 is None:
            g0 = g_norm.clamp_min(1e-300)
        done = g_norm <= tol * g0
        n_done = int(done.sum())
        if n_done == len(work):
            break
        if 2 * n_done > len(work):
            w_out[work[done]], done_out[work[done]] = w[done], True
            keep = ~done
            work, features, target, g0 = work[keep], features[keep], target[keep], g0[keep]
            w, margin, f_w, grad = w[keep], margin[keep], f_w[keep], grad[keep]
            inside, xt, done = inside[keep], features.transpose(1, 2), done[keep]
        hessian = eye + 2 * C * torch.bmm(xt * inside.unsqueeze(1), features)
        direction = -torch.linalg.solve(hessian, grad.unsqueeze(2)).squeeze(2)  # (W, F)
        x_dir = torch.bmm(features, direction.unsqueeze(2)).squeeze(2)  # (W, N)
        # Backtracking: halve the step where the objective does not fall enough (Armijo).
        slope = (grad * direction).sum(1)  # negative
        step = torch.where(done, 0.0, 1.0).to(dtype)
        for _ in range(40):
            f_t = _svm_objective(
                w + step[:, None] * direction, margin + step[:, None] * x_dir, target, C
            )
            enough = f_t <= f_w + 1e-4 * step * slope
            if bool(enough.all()):
                break
            step = torch.where(enough, step, step / 2)
        w = w + step.unsqueeze(1) * direction
        margin = margin + step.unsqueeze(1) * x_dir
        f_w = _svm_objective(w, margin, target, C)
    w_out[work], done_out[work] = w, done
    return w_out, done_out


def _svm_objective(w: torch.Tensor, margin: torch.Tensor, target: torch.Tensor, C: float):
    """``w.w / 2 + C * sum max(0, 1 - y * margin)^2`` for weights (B, F), margins X w (B, N)."""
    return 0.5 * (w * w).sum(1) + C * (1 - target * margin).clamp_min(0).square().sum(1)
