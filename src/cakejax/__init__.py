"""cakejax: the "Baking with JAX Autodiff" course as a library.

Typed Equinox models of the course's cakes and the derivative tools JAX leaves to the user.
Every public name is importable from here: `import cakejax as cj; cj.Deliciousness()`.

Shapes and dtypes are checked at run time by jaxtyping + beartype, through an import hook
installed below before any submodule is imported; `CAKEJAX_TYPECHECK=0` turns the checks off.
"""

import contextlib as _contextlib
import importlib.metadata as _metadata

from ._typing import typecheck_enabled as _typecheck_enabled


if _typecheck_enabled():
    from jaxtyping import install_import_hook as _install_import_hook

    _typechecked = _install_import_hook("cakejax", "beartype.beartype")
else:
    _typechecked = _contextlib.nullcontext()

with _typechecked:
    from ._autodiff import (
        clipped_mean_grad as clipped_mean_grad,
        hvp as hvp,
        nth_derivative as nth_derivative,
        per_example_grad as per_example_grad,
    )
    from ._bake import (
        optimise_recipe as optimise_recipe,
        RecipeResult as RecipeResult,
        RecipeSolution as RecipeSolution,
    )
    from ._checkpoint import (
        load_checkpoint as load_checkpoint,
        save_checkpoint as save_checkpoint,
    )
    from ._complex import (
        ascent_direction as ascent_direction,
        complex_jacobian as complex_jacobian,
        holomorphic_grad as holomorphic_grad,
        is_holomorphic as is_holomorphic,
        realify as realify,
        wirtinger as wirtinger,
    )
    from ._customers import (
        customers_from_processes as customers_from_processes,
        optimise_recipes as optimise_recipes,
    )
    from ._jacobian_penalty import jacobian_penalty as jacobian_penalty
    from ._spectral import (
        spectral_bound as spectral_bound,
        spectral_normalise as spectral_normalise,
    )
    from ._spectral_radius import spectral_radius as spectral_radius
    from .fixed_point import (
        AbstractAdjoint as AbstractAdjoint,
        AbstractFixedPointSolver as AbstractFixedPointSolver,
        Anderson as Anderson,
        FixedPoint as FixedPoint,
        FixedPointResult as FixedPointResult,
        FixedPointSolution as FixedPointSolution,
        Implicit as Implicit,
        JacobianFree as JacobianFree,
        Newton as Newton,
        Phantom as Phantom,
        Picard as Picard,
    )
    from .layers import (
        GradientClip as GradientClip,
        GradientReversal as GradientReversal,
        GradientScale as GradientScale,
        scale_gradient as scale_gradient,
        StraightThrough as StraightThrough,
        YeastActivity as YeastActivity,
    )
    from .recipes import (
        CakeProperties as CakeProperties,
        Deliciousness as Deliciousness,
        DoughMaturity as DoughMaturity,
        FlavorStability as FlavorStability,
        FluffinessLoss as FluffinessLoss,
        INGREDIENTS as INGREDIENTS,
        ingredients as ingredients,
        like_loss as like_loss,
        LikeModel as LikeModel,
        Polynomial as Polynomial,
        PROPERTIES as PROPERTIES,
        SmoothMagic as SmoothMagic,
        SweetnessError as SweetnessError,
        TrickyMagic as TrickyMagic,
        VibrationScore as VibrationScore,
    )

from . import testing as testing  # noqa: E402 - checks for users' own layers


__version__ = _metadata.version("cakejax")  # single source: pyproject.toml's version
