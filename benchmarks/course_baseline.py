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
