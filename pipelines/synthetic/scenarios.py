"""Scenario registry: named, frozen settings for synthetic microscopy images.

Densities are given per megapixel so an image of any size has the same crowding as the
reference 2048² image the numbers were chosen for; particle sizes are in pixels and the
calibration stays fixed, so a smaller image is a smaller field of view of the same sample.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from pipelines.errors import InvalidInput
from pipelines.options import check_option_types

PARTICLE = "particle"
SINGLE_SITE = "single_site"


@dataclass(frozen=True)
class ScenarioConfig:
    """Everything that shapes one synthetic image besides its size and seed.

    Intensities are in units of the mean support signal (1.0 = carbon background in
    dark-field, 1.0 = open beam in bright-field); ``dose_counts`` converts them to electron
    counts before Poisson noise.
    """

    name: str
    description: str
    nm_per_px: float = 0.25
    # particles: log-normal equivalent diameters, clipped
    particles_per_mpx: float = 155.0
    particle_min_count: int = 0
    diameter_median_px: float = 12.0
    diameter_sigma: float = 0.3
    diameter_min_px: float = 4.0
    diameter_max_px: float = 40.0
    aspect_ratio_max: float = 1.35
    irregularity: float = 0.04  # relative amplitude of faceting (radius harmonics 2-5)
    particle_brightness_min: float = 0.8
    particle_brightness_max: float = 2.2
    # touching pairs and agglomerates (fractions of all particles)
    pair_fraction: float = 0.25
    cluster_fraction: float = 0.0
    cluster_size_min: int = 3
    cluster_size_max: int = 8
    chain_bias: float = 0.5  # 1 = linear chains, 0 = compact clusters
    touch_overlap_max: float = 0.12  # how far touching particles interpenetrate (of radii sum)
    # single sites (isolated atoms, 1-3 px)
    sites_per_mpx: float = 50.0
    site_min_count: int = 0
    sites_labelled: bool = False  # False: distractors that a detector must ignore
    site_radius_min_px: float = 0.9
    site_radius_max_px: float = 1.6
    site_brightness_min: float = 1.5
    site_brightness_max: float = 3.0
    # support and optics
    bright_field: bool = False
    gradient_amplitude: float = 0.5
    blotch_amplitude: float = 0.25
    blotch_scale_px: float = 160.0
    texture_amplitude: float = 0.12
    texture_sigma_px: float = 1.2
    probe_blur_px: float = 1.0
    fresnel_fringe: float = 0.0  # bright-field only: halo strength at particle edges
    dose_counts: float = 30.0
    read_noise_counts: float = 2.0
    scale_bar: bool = True
    # simulated user labels
    crop_count: int = 2
    crop_objects_target: int = 20
    crop_anchor_class: str | None = None  # first crop must hold one object of this class

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SCENARIOS: dict[str, ScenarioConfig] = {
    config.name: config
    for config in (
        ScenarioConfig(
            name="particles",
            description=(
                "HAADF-STEM Pd particles on carbon: ~650 particles per 2048² (D ~12 px, 25 % in "
                "touching pairs), unlabelled single atoms as distractors, 2 crops of ~20 objects"
            ),
        ),
        ScenarioConfig(
            name="particles+sites",
            description=(
                "HAADF-STEM single-atom catalyst: ~7 particles and ~280 single sites per 2048², "
                "both labelled; 3 crops with ~30 sites and 1-3 particles"
            ),
            particles_per_mpx=1.7,
            particle_min_count=3,
            diameter_median_px=14.0,
            pair_fraction=0.0,
            sites_per_mpx=67.0,
            sites_labelled=True,
            site_brightness_min=2.0,
            site_brightness_max=3.5,
            probe_blur_px=0.7,
            crop_count=3,
            crop_objects_target=11,
            crop_anchor_class=PARTICLE,
        ),
        ScenarioConfig(
            name="agglomerates",
            description=(
                "Sintered catalyst: most particles in touching chains and compact clusters of "
                "3-12, the rest in pairs or alone"
            ),
            particles_per_mpx=200.0,
            diameter_median_px=11.0,
            pair_fraction=0.15,
            cluster_fraction=0.6,
            cluster_size_min=3,
            cluster_size_max=12,
            touch_overlap_max=0.2,
            irregularity=0.06,
            crop_objects_target=30,
        ),
        ScenarioConfig(
            name="uneven",
            description=(
                "Low-dose HAADF on thick, uneven carbon: strong gradient and blotches, coarse "
                "texture, dim particles"
            ),
            gradient_amplitude=0.9,
            blotch_amplitude=0.6,
            blotch_scale_px=120.0,
            texture_amplitude=0.3,
            texture_sigma_px=1.8,
            particle_brightness_min=0.5,
            particle_brightness_max=1.5,
            dose_counts=10.0,
            read_noise_counts=3.0,
        ),
        ScenarioConfig(
            name="brightfield",
            description=(
                "TEM bright-field: dark particles on a bright, unevenly lit film with Fresnel "
                "fringes; the scale bar is dark too"
            ),
            nm_per_px=0.5,
            diameter_median_px=14.0,
            bright_field=True,
            particle_brightness_min=0.35,
            particle_brightness_max=0.9,
            gradient_amplitude=0.3,
            blotch_amplitude=0.12,
            texture_amplitude=0.06,
            fresnel_fringe=0.6,
            probe_blur_px=0.8,
            dose_counts=200.0,
            read_noise_counts=4.0,
            sites_per_mpx=0.0,
        ),
        ScenarioConfig(
            name="sizes",
            description="Broad size distribution: diameters 4-60 px (log-normal, sigma 0.55)",
            nm_per_px=0.5,
            particles_per_mpx=90.0,
            diameter_median_px=14.0,
            diameter_sigma=0.55,
            diameter_min_px=4.0,
            diameter_max_px=60.0,
            pair_fraction=0.15,
            crop_objects_target=20,
        ),
        ScenarioConfig(
            name="dense",
            description=(
                "Crowded particles for throughput tests: ~2500 per 2048², ~10 000 per 4096²"
            ),
            particles_per_mpx=600.0,
            diameter_median_px=10.0,
            diameter_max_px=30.0,
            sites_per_mpx=30.0,
            crop_objects_target=40,
        ),
    )
}


def list_scenarios() -> list[str]:
    """Scenario names in registry order."""
    return list(SCENARIOS)


def get_scenario(name: str, **overrides: Any) -> ScenarioConfig:
    """The named scenario with some fields replaced (unknown names or fields are an error)."""
    if name not in SCENARIOS:
        raise InvalidInput(
            f"unknown scenario '{name}'; choose one of: {', '.join(list_scenarios())}"
        )
    config = SCENARIOS[name]
    if not overrides:
        return config
    fields = {f.name for f in dataclasses.fields(ScenarioConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise InvalidInput(
            f"unknown scenario setting(s) {', '.join(unknown)}; "
            f"settable: {', '.join(sorted(fields - {'name', 'description'}))}"
        )
    overrides = check_option_types(overrides, ScenarioConfig, "scenario setting")
    config = dataclasses.replace(config, **overrides)
    _check_values(config)
    return config


def _check_values(config: ScenarioConfig) -> None:
    """Refuse settings that would draw nonsense (negative sizes, fractions above 1, ...)."""
    problems = []
    if config.nm_per_px <= 0:
        problems.append("nm_per_px must be > 0")
    if config.particles_per_mpx < 0 or config.sites_per_mpx < 0:
        problems.append("densities must be >= 0")
    if not 0 < config.diameter_min_px <= config.diameter_max_px:
        problems.append("need 0 < diameter_min_px <= diameter_max_px")
    if config.diameter_median_px <= 0 or config.diameter_sigma < 0:
        problems.append("diameter_median_px must be > 0 and diameter_sigma >= 0")
    if config.aspect_ratio_max < 1:
        problems.append("aspect_ratio_max must be >= 1")
    if not 0 <= config.irregularity <= 0.2:
        problems.append("irregularity must be in [0, 0.2]")
    fractions = (config.pair_fraction, config.cluster_fraction)
    if min(fractions) < 0 or sum(fractions) > 1:
        problems.append("pair_fraction and cluster_fraction must be >= 0 and sum to <= 1")
    if not 2 <= config.cluster_size_min <= config.cluster_size_max:
        problems.append("need 2 <= cluster_size_min <= cluster_size_max")
    if not 0 <= config.touch_overlap_max < 0.5:
        problems.append("touch_overlap_max must be in [0, 0.5)")
    if not 0 < config.site_radius_min_px <= config.site_radius_max_px:
        problems.append("need 0 < site_radius_min_px <= site_radius_max_px")
    if config.particle_brightness_min > config.particle_brightness_max or (
        config.site_brightness_min > config.site_brightness_max
    ):
        problems.append("brightness minimum above maximum")
    if config.dose_counts <= 0 or config.read_noise_counts < 0 or config.probe_blur_px < 0:
        problems.append("dose_counts must be > 0, read_noise_counts and probe_blur_px >= 0")
    if config.blotch_scale_px <= 0 or config.texture_sigma_px < 0:
        problems.append("blotch_scale_px must be > 0 and texture_sigma_px >= 0")
    if config.crop_count < 1 or config.crop_objects_target < 1:
        problems.append("crop_count and crop_objects_target must be >= 1")
    if problems:
        raise InvalidInput(f"scenario '{config.name}': {'; '.join(problems)}")
