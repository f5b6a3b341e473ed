"""Small optimisation problems behind the gradient aggregators, solved in torch; one module each.

Every solver here works on K×K Gramians (K = number of tasks, a few to a few dozen), is batched
where several problems share a call, runs on the Gramian's device and never moves data to the
host: the only host synchronisations are the convergence tests of the iterative loops (every
second iteration on the CPU, every fourth on accelerators; a loop that runs out of iterations
returns its last iterate) and the eigendecomposition's error check. The solves run in float64
(float32 on devices without float64, e.g. MPS) whatever the input dtype; callers cast back.

* :mod:`~mtlkit.balancing.solvers.gramian`: the working precision, the one Gramian check, the
  cosine matrix, the unit-scale Gramian (symmetrised, projected onto the PSD cone: float32
  Gramians of long Jacobians are indefinite at ~1e-6) and the equal-projection weights of IMTL-G
  and ConFIG.
* :mod:`~mtlkit.balancing.solvers.nonneg_qp`: ``min ½xᵀHx + cᵀx`` s.t. ``x ≥ 0`` (optionally also
  ``Σx = 1``): closed forms for K ≤ 2, otherwise the primal-dual interior point of
  :mod:`~mtlkit.balancing.solvers.interior_point` (Mehrotra predictor-corrector, batched), run
  until the duality gap is below 1e-12 of the objective's size.
* :mod:`~mtlkit.balancing.solvers.min_norm`: MGDA's ``min_{w∈Δ} wᵀGw``.
* :mod:`~mtlkit.balancing.solvers.dual_cone`: ``min_v vᵀGv`` s.t. ``v ≥ u`` (UPGrad, DualProj),
  solved on the cosine matrix so that each task is resolved in its own scale.
* :mod:`~mtlkit.balancing.solvers.ball`: CAGrad's ``max_{‖d − g₀‖ ≤ r} minᵢ gᵢᵀd`` through its
  dual over the simplex: closed form for K = 2, otherwise a safeguarded search for ‖g_w*‖ along
  the piecewise-linear path of a parametric simplex QP (two to four QPs typically);
  the update stays in the ball whatever the solve returns.
* :mod:`~mtlkit.balancing.solvers.fair`: ``Gw = w^{-1/α}``, ``w > 0`` (Nash-MTL for α = 1,
  FairGrad) by Newton's method with an exact line search.
* :mod:`~mtlkit.balancing.solvers.simplex`: Euclidean projection onto the simplex (MoCo).
* :mod:`~mtlkit.balancing.solvers.iterations`: what the iterative solvers share (convergence-test
  cadence, default tolerance, the step that keeps an iterate positive).
"""
