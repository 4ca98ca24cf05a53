"""The course's inputs and the numbers its notebook printed (../shared/seeds/, "Baking with JAX
Autodiff"), transcribed digit for digit. The tour and the tests compare cakejax against these.

The notebook ran in float32; its printed values carry float32 rounding (e.g. 0.06000023 for an
exact 0.06), so comparisons use `RTOL` and `ATOL` below, in both precisions.
"""

RTOL = 2e-5
ATOL = 1e-6

# --- Part 1: The Basics -----------------------------------------------------------------

TANH_GRAD_AT_2 = 0.07065081596374512
POLY_X = 1.0
POLY_DERIVATIVES = (4.0, 10.0, 6.0, 0.0)  # f', f'', f''', f'''' of x³ + 2x² − 3x + 1 at x = 1

LIKE_SEED = 42
LIKE_FEATURES = (
    (0.8, 0.9, -0.5),
    (0.7, 0.8, -0.4),
    (0.3, 0.4, -0.8),
    (0.9, 0.7, -0.3),
)
LIKES = (True, True, False, True)
LIKE_LOSS = 2.247727394104004
LIKE_GRAD_WEIGHTS = (-0.05690404, 0.03078762, -0.52113414)
LIKE_GRAD_BIAS = 0.45482203364372253

# --- Part 2: Advanced Baking --------------------------------------------------------------

CAKE = {"butter": 1.0, "eggs": 3.0, "flour": 2.0, "sugar": 1.5}
PROPERTIES_AT_CAKE = (8.862908, 5.2, 3.714068)
JACOBIAN_AT_CAKE = (
    (0.1, 0.0, -0.2, 4.0),
    (0.2, 1.6666667, 0.0, 0.0),
    (0.6, 0.5, 0.41986483, 0.5727589),
)
JVP_TANGENT = (0.0, 0.0, -0.05, 0.1)
JVP_OUT = (0.40999997, 0.0, 0.03628265)
VJP_COTANGENT = (0.2, -0.1, 0.0)
VJP_OUT = (0.0, -0.16666667, -0.04, 0.8)
HESSIAN_AT_CAKE = (
    (-0.16000001, -0.6666667, 0.04, -0.8),
    (-0.6666667, -5.555556, 0.0, 0.0),
    (0.04, 0.0, 0.33049622, 1.6),
    (-0.8, 0.0, 1.6, -35.657787),
)
HVP_DIRECTION = (0.1, -0.2, 0.05, 0.1)
HVP_OUT = (0.03933334, 1.0444444, 0.18052481, -3.5657785)
FLUFFINESS_GRAD = (0.06000023, -0.13333383, -0.02000008, 0.0)
FLUFFINESS_GRAD_STOPPED = (-0.04000015, -0.3333346, 0.0, 0.0)
TARGET_SWEETNESS = (9.5, 10.0, 10.5, 9.8)
PER_CUSTOMER_GRADS = (
    (-0.12741832, 0.0, 0.25483665, -5.096733),
    (-0.22741833, 0.0, 0.45483667, -9.096733),
    (-0.32741833, 0.0, 0.65483665, -13.096733),
    (-0.18741837, 0.0, 0.37483674, -7.4967346),
)

# --- Part 3: Exotic Flavors ---------------------------------------------------------------

VIBRATION_Z = 2.0 + 1.0j
VIBRATION_SCORE = 1.000
VIBRATION_JAX_GRAD = -1.0 + 2.0j
SMOOTH_MAGIC_VALUE = 5.0 + 5.0j
SMOOTH_MAGIC_DERIVATIVE = 5.0 + 2.0j
TRICKY_MAGIC_HOLOMORPHIC_GRAD = 1.0 - 0.0j  # what jax.grad(..., holomorphic=True) says for conj
TRICKY_JACOBIAN_Z = 1.2 + 0.5j
TRICKY_JACOBIAN = ((1.0, 0.0), (0.0, -1.0))
STABILITY_X = 3.0
STABILITY = 10.0
STABILITY_GRAD = 6.0

# --- Part 4: Secret Family Recipes ---------------------------------------------------------

YEAST_HOT = 500.0
YEAST_ACTIVITY_HOT = float("inf")  # the course's log(1 + exp(500)) overflows
YEAST_GRAD_HOT = 1.0
DELICIOUSNESS_GRAD = (-0.1525816, -0.91666603, -0.66476905, 8.810353)
BUTTER_CLIP = 0.1
CLIPPED_GRAD = (-0.1, -0.91666603, -0.66476905, 8.810353)
DOUGH_PARAMS = (0.75, 10.0)  # (retention a, boost b); equilibrium b / (1 - a) = 40
DOUGH_INITIAL = 0.0
DOUGH_GRAD = (160.00, 4.00)  # printed with two decimals
