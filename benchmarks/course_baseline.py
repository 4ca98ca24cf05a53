"""The course's plain functions, copied from the notebook: the baselines cakejax's models are
compared against in the same run."""

import jax
import jax.numpy as jnp


def bake_cake_properties(ingredients_vec):
    sugar, flour, butter, eggs = (ingredients_vec[3], ingredients_vec[2], ingredients_vec[0],
                                  ingredients_vec[1])
    sweetness = 10 * jnp.log1p(sugar) + 0.1 * butter - 0.2 * flour
    fluffiness = 5 * (eggs / 3.0) - 0.5 * (flour - 2.0) ** 2 + 0.2 * butter
    cost = (sugar**1.1 + flour**0.9 + butter**1.2 + eggs**1.0) * 0.5
    return jnp.array([sweetness, fluffiness, cost])


def deliciousness_score(ingredient_vec):
    sweetness, fluffiness, cost = bake_cake_properties(ingredient_vec)
    return -((sweetness - 10.0) ** 2) - (fluffiness - 5.0) ** 2 - 0.5 * cost


def sigmoid(x):
    return 0.5 * (jnp.tanh(x / 2) + 1)


def predict_like(W, b, ingredient_features):
    return sigmoid(jnp.dot(ingredient_features, W) + b)


def calculate_loss(W, b, ingredient_features, customer_likes):
    predictions = predict_like(W, b, ingredient_features)
    epsilon = 1e-7
    label_probabilities = predictions * customer_likes + (1 - predictions) * (1 - customer_likes)
    return -jnp.sum(jnp.log(label_probabilities + epsilon))


def find_final_dough_maturity_unrolled(params, initial_maturity, steps):
    """Differentiating the loop itself: `steps` applications of x ↦ a x + b, unrolled into
    the graph by `fori_loop` with a static trip count (reverse mode differentiates it)."""
    a, b = params
    return jax.lax.fori_loop(0, steps, lambda _, x: a * x + b, initial_maturity)


def cake_quality_simple(x):
    return x**3 + 2 * x**2 - 3 * x + 1


def calculate_fluffiness(ingredients_vec):
    butter, eggs, flour, sugar = ingredients_vec
    return 5 * (eggs / 3.0) - 0.5 * (flour - 2.0) ** 2 + 0.2 * butter


def predict_ideal_fluffiness(butter, eggs, flour):
    return 2.0 + butter * 0.5 + eggs * 1.0 - 0.1 * flour


def fluffiness_loss(ingredients_vec):
    butter, eggs, flour, sugar = ingredients_vec
    actual_fluff = calculate_fluffiness(ingredients_vec)
    ideal_target = predict_ideal_fluffiness(butter, eggs, flour)
    return (actual_fluff - ideal_target) ** 2


def sweetness_error(ingredients_vec, target_sweet):
    actual_sweetness = bake_cake_properties(ingredients_vec)[0]
    return (actual_sweetness - target_sweet) ** 2


def score_from_vibration(z):
    return jnp.real(z) * 3.0 - jnp.real(z * jnp.conjugate(z))


def calculate_flavor_stability(ingredient_potency_x):
    z_activation = 1.0 + ingredient_potency_x * 1j
    stability_score = z_activation * jnp.conjugate(z_activation)
    return jnp.real(stability_score)


@jax.custom_jvp
def yeast_activity(temp):
    return jnp.log(1.0 + jnp.exp(temp))


@yeast_activity.defjvp
def yeast_activity_jvp(primals, tangents):
    (temp,) = primals
    (temp_dot,) = tangents
    activity = yeast_activity(temp)
    activity_dot = (1 - 1 / (1 + jnp.exp(temp))) * temp_dot
    return activity, activity_dot


@jax.custom_vjp
def pass_through_with_butter_limit(ingredient_vec, butter_range):
    return ingredient_vec


def butter_limit_fwd(ingredient_vec, butter_range):
    return ingredient_vec, butter_range


def butter_limit_bwd(residuals, grad_in):
    butter_grad = grad_in[0]
    clipped_butter_grad = jnp.clip(butter_grad, -residuals, residuals)
    return (grad_in.at[0].set(clipped_butter_grad), None)


pass_through_with_butter_limit.defvjp(butter_limit_fwd, butter_limit_bwd)


def score_with_butter_limit(ingredient_vec):
    adjusted_for_grad = pass_through_with_butter_limit(ingredient_vec, 0.1)
    return deliciousness_score(adjusted_for_grad)


@jax.custom_vjp
def find_final_dough_maturity(params, initial_maturity, tol=1e-6):
    a_retention, b_boost = params
    update = lambda x: a_retention * x + b_boost  # noqa: E731
    state = (initial_maturity, update(initial_maturity))
    maturity_star = jax.lax.while_loop(lambda s: jnp.abs(s[0] - s[1]) > tol,
                                       lambda s: (s[1], update(s[1])), state)[1]
    return maturity_star


def maturity_fwd(params, initial_maturity, tol=1e-6):
    maturity_star = find_final_dough_maturity(params, initial_maturity, tol)
    return maturity_star, (params, maturity_star)


def maturity_bwd(residuals, maturity_star_bar):
    params, maturity_star = residuals
    a_retention, b_boost = params
    w = maturity_star_bar / (1.0 - a_retention + 1e-8)
    a_grad = w * maturity_star
    b_grad = w
    return ((a_grad, b_grad), None, None)


find_final_dough_maturity.defvjp(maturity_fwd, maturity_bwd)
