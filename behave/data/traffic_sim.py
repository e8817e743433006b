"""Multi-agent highway traffic from highway-env's IDM + MOBIL vehicles, recorded at a fixed rate.

highway-env (https://github.com/Farama-Foundation/HighwayEnv) models each vehicle with the
Intelligent Driver Model (longitudinal: desired speed, time gap, jam distance, comfortable
acceleration) and MOBIL (lane changes: politeness, minimum acceleration gain). We step its road
directly (``road.act(); road.step(dt)``): no ego agent, no rendering, about 3x faster than
``env.step``.

Driver styles set those parameters per vehicle, so behaviors differ in the data (not only in
the labels): an aggressive driver wants to go fast, follows close and changes lanes for a small
gain; a timid one wants to go slow, keeps a long gap and rarely changes lanes. Traffic is kept
moderately dense (``gap_m`` between vehicles of one lane at the start) so that fast drivers are
not all stuck behind slow ones and realized speeds separate by style (see DATA-NOTES: in dense
traffic they barely do).

A scene: a straight road of 2-4 lanes, vehicles placed lane by lane with random gaps and styles,
``warmup_s`` simulated and discarded (IDM settles from the random start), then ``duration_s``
recorded at ``hz`` frames per second: (frame, agent, x, y, vx, vy, lane, style), metres and m/s;
(vx, vy) is the displacement to the next frame times ``hz``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

__all__ = ["DriverStyle", "STYLES", "SceneConfig", "simulate_scene"]


@dataclass(frozen=True)
class DriverStyle:
    target_speed: tuple[float, float]  # desired speed range (m/s), drawn per vehicle
    time_wanted: float  # IDM desired time gap T (s)
    distance_wanted: float  # IDM jam distance s0 (m), on top of the vehicle length
    comfort_acc_max: float  # IDM comfortable acceleration a (m/s^2)
    politeness: float  # MOBIL politeness p: weight of others' loss in a lane change
    lane_change_min_gain: float  # MOBIL threshold Δa_th (m/s^2)


# highway-env's IDMVehicle defaults are the "normal" style (T 1.5 s, s0 10 m, a 3 m/s^2, p 0).
STYLES: dict[str, DriverStyle] = {
    "aggressive": DriverStyle((31.0, 36.0), 0.8, 2.0, 4.0, 0.0, 0.05),
    "normal": DriverStyle((24.0, 28.0), 1.5, 5.0, 3.0, 0.0, 0.2),
    "timid": DriverStyle((17.0, 21.0), 2.2, 10.0, 2.0, 0.5, 0.5),
}


@dataclass(frozen=True)
class SceneConfig:
    lanes: tuple[int, int] = (2, 4)  # number of lanes, drawn per scene (inclusive)
    vehicles_per_lane: tuple[int, int] = (4, 7)  # drawn per scene (inclusive)
    gap_m: float = 30.0  # mean initial gap between vehicles of one lane
    style_mix: dict[str, float] = field(
        default_factory=lambda: {"aggressive": 0.25, "normal": 0.5, "timid": 0.25}
    )
    hz: float = 10.0  # recording rate (frames per second); the simulation steps at this rate
    warmup_s: float = 3.0  # simulated, not recorded
    duration_s: float = 15.0  # recorded

    def __post_init__(self) -> None:
        unknown = sorted(set(self.style_mix) - set(STYLES))
        if unknown:
            raise ValueError(f"style_mix: unknown styles {unknown}; choose from {list(STYLES)}")
        if self.hz <= 0 or self.duration_s <= 0 or self.warmup_s < 0:
            raise ValueError("hz and duration_s must be > 0 and warmup_s >= 0")
        if min(self.lanes) < 1 or min(self.vehicles_per_lane) < 1:
            raise ValueError("lanes and vehicles_per_lane must be >= 1")

    @property
    def frames(self) -> int:
        return int(round(self.duration_s * self.hz))

    def to_dict(self) -> dict:
        return asdict(self)


def _import_highway_env():
    try:
        from highway_env.road.road import Road, RoadNetwork
        from highway_env.vehicle.behavior import IDMVehicle
    except ImportError as err:
        raise ImportError(
            "traffic generation needs highway-env: pip install 'behave[traffic]' "
            "(or pip install highway-env)"
        ) from err
    return Road, RoadNetwork, IDMVehicle


def simulate_scene(config: SceneConfig, seed: int) -> dict[str, np.ndarray]:
    """One scene: arrays of length frames x vehicles, in (frame, agent) order.

    Keys: frame, agent (Int32), x, y, vx, vy (float32, metres and m/s), lane (Int8), style (str).
    Same config and seed -> the same arrays.
    """
    Road, RoadNetwork, IDMVehicle = _import_highway_env()
    rng = np.random.default_rng(seed)
    lanes = int(rng.integers(config.lanes[0], config.lanes[1] + 1))
    per_lane = int(rng.integers(config.vehicles_per_lane[0], config.vehicles_per_lane[1] + 1))
    # long enough that nobody reaches its end: 60 m/s for the whole scene, plus the start area
    length = 200.0 + per_lane * config.gap_m * 2 + 60.0 * (config.warmup_s + config.duration_s)
    network = RoadNetwork.straight_road_network(lanes, length=length, speed_limit=40)
    road = Road(network=network, np_random=rng, record_history=False)
    names = list(config.style_mix)
    probs = np.array([config.style_mix[n] for n in names], dtype=float)
    probs /= probs.sum()
    styles: list[str] = []
    for lane_id in range(lanes):
        lane = network.get_lane(("0", "1", lane_id))
        s = 20.0 + rng.uniform(0.0, config.gap_m)
        for _ in range(per_lane):
            style = names[int(rng.choice(len(names), p=probs))]
            p = STYLES[style]
            vehicle = IDMVehicle(
                road,
                lane.position(s, 0.0),
                heading=lane.heading_at(s),
                speed=float(rng.uniform(20.0, 26.0)),
                target_speed=float(rng.uniform(*p.target_speed)),
            )
            # IDMVehicle reads these as class constants through self: per-vehicle overrides
            vehicle.TIME_WANTED = p.time_wanted
            vehicle.DISTANCE_WANTED = p.distance_wanted + vehicle.LENGTH
            vehicle.COMFORT_ACC_MAX = p.comfort_acc_max
            vehicle.POLITENESS = p.politeness
            vehicle.LANE_CHANGE_MIN_ACC_GAIN = p.lane_change_min_gain
            road.vehicles.append(vehicle)
            styles.append(style)
            s += config.gap_m * rng.uniform(0.6, 1.6)

    dt = 1.0 / config.hz
    for _ in range(int(round(config.warmup_s * config.hz))):
        road.act()
        road.step(dt)
    n, frames = len(road.vehicles), config.frames
    # one frame more than recorded: velocities are the displacement to the next frame (what a
    # tracker would measure; highway-env's `velocity` ignores the slip angle of lane changes)
    position = np.empty((frames + 1, n, 2), dtype=np.float64)
    lane_index = np.empty((frames, n), dtype=np.int8)
    for f in range(frames + 1):
        for i, v in enumerate(road.vehicles):
            position[f, i] = v.position
            if f < frames:
                lane_index[f, i] = v.lane_index[2]
        if f < frames:
            road.act()
            road.step(dt)
    velocity = np.diff(position, axis=0) * config.hz  # (frames, n, 2)
    state = np.concatenate([position[:frames], velocity], -1).astype(np.float32)
    return {
        "frame": np.repeat(np.arange(frames, dtype=np.int32), n),
        "agent": np.tile(np.arange(n, dtype=np.int32), frames),
        "x": state[..., 0].ravel(),
        "y": state[..., 1].ravel(),
        "vx": state[..., 2].ravel(),
        "vy": state[..., 3].ravel(),
        "lane": lane_index.ravel(),
        "style": np.tile(np.array(styles, dtype=object), frames),
        "lanes": lanes,
    }
