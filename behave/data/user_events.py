"""Synthetic multi-domain app-usage logs with structure a next-behavior model can learn.

No real multi-domain app log ships offline, so we simulate one that looks like a product
analytics export (one row per user action) and has the properties the BehaveGPT experiments
need:

- **Vocabulary**: ``num_behaviors`` types named ``"{family}.{verb}.{nnn}"`` (``"shop.add_to_cart.017"``)
  in 11 families (feed, search, social, shop, media, pay, settings, notify, support, churn, risky).
- **Long tail**: per-domain popularity ``pi(rank) ∝ rank^-ZIPF_EXPONENT`` (1.2; pooled over domains,
  with habits and funnels, the realized exponent is ≈ 1.0): the top handful of types dominate and
  hundreds are rare. The two families probed later (churn, risky) live in the tail.
- **Predictable tail** (so a head-vs-tail objective such as DRO has something to win): the
  per-domain transition graph is a sparse *navigation tree*. Each type hangs below a more popular
  "parent" that leads to it with probability ``g * pi_child / pi_parent`` (parents are chosen so
  this ratio is not tiny), goes back to its parent, has one or two lateral successors and maybe a
  self-repeat; the rest of its row "restarts" at a context-dependent entry point. A rare type is
  therefore rare but likely *after its parent*, and its own successors are concentrated.
- **Funnels / motifs**: multi-step scripts (search → view → add_to_cart → checkout → pay; help →
  ticket → downgrade → cancel; failed_login → reset → new device → payout change → rapid
  transfer) that users with the matching persona repeat; each next step follows with p = 0.85.
- **Users**: one domain each, a latent persona (8 family mixtures), personal favourite behaviors
  and "rituals" (after trigger A this user does B), a chronotype, a work-life location pattern,
  and a heavy-tailed activity level.
- **Time**: sessions of bursty events (seconds to minutes apart, log-normal with family-dependent
  medians) separated by hours; session starts follow per-domain hour-of-day / weekday rhythms,
  and the hour, weekday, location and session start shift *which* family a user enters.
- **Domains** share the vocabulary but permute popularity, rewire 30 % of the graph, reweight
  families and personas and have their own rhythms (held-out-domain adaptation is meaningful).

Where we differ from a real log: timestamps are user-local wall-clock time with no time zones,
there is no app-version drift, and users never leave mid-window (churn events are signals only).

Simulation is vectorized: all users of a block (~2 M events) advance one position per step, so
the Python loop runs ``max events per user`` times per block, never once per event.
"""

from __future__ import annotations

import datetime as dt
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from behave.data.manifest import write_manifest
from behave.data.schema import EVENT_SCHEMA, EVENTS_FILE

__all__ = [
    "generate_user_events",
    "behavior_family",
    "FAMILIES",
    "PERSONAS",
    "LOCATIONS",
    "ZIPF_EXPONENT",
]

GENERATOR = "behave.data.user_events"
GENERATOR_VERSION = "1"

ZIPF_EXPONENT = 1.2  # s in pi(rank) ∝ rank^-s
POPULARITY_NOISE = 1.2  # sd of the log-score that ranks types (family prominence + noise)
DOMAIN_RANK_CORRELATION = 0.8  # how much domains agree on which types are popular
REWIRE = 0.3  # fraction of parent / lateral edges each domain redraws
CHILD_SHARE = (0.45, 0.7)  # g: share of a child's traffic that comes from its parent
CHILD_CAPACITY = 0.7  # at most this much of a row goes to children
MAX_CHILDREN = 8
BACK_PROB = (0.25, 0.5)  # child -> parent ("back")
LATERAL_PROB = (0.1, 0.3)
REPEAT_PROB = (0.15, 0.4)  # self-repeat for scroll/play_next-like verbs
MAX_STAY = 0.9  # every row keeps >= 10 % restart mass
MAX_INFLOW = 0.9  # the graph supplies at most 90 % of a type's traffic; restarts the rest
MOTIF_CONTINUE = 0.85  # P(next funnel step | in funnel)
MOTIF_VARIANTS = 4  # concrete instances per funnel template
MOTIF_STEP_POWER = 0.6  # funnel steps pick variants ∝ pi^this: leans to the tail, not uniform
RITUAL_PROB = 0.5  # P(user's ritual successor | its trigger)
NUM_FAVORITES = 6
NUM_RITUALS = 3
NUM_FAVORITE_MOTIFS = 3
EVENTS_PER_USER = 250  # default num_users = num_events // this
SESSION_MEDIAN_EVENTS = 6.0
MIN_SESSION_GAP_S = 300
BLOCK_EVENTS = 2_000_000
ROW_GROUP_ROWS = 262_144

LOCATIONS = ("home", "work", "commute", "other")


@dataclass(frozen=True)
class Family:
    name: str
    share: float  # fraction of the vocabulary
    prominence: float  # how readily its types rank among the popular ones
    gap_s: float  # median seconds until the next event after one of this family
    verbs: tuple[str, ...]  # the first verbs get the family's most popular types


FAMILIES: tuple[Family, ...] = (
    Family(
        "feed",
        0.12,
        1.0,
        8,
        ("scroll", "view_post", "like", "open_story", "refresh", "expand", "hide_post", "save"),
    ),
    Family(
        "search",
        0.09,
        0.7,
        12,
        ("query", "view_results", "open_result", "filter", "refine", "voice_query", "clear"),
    ),
    Family(
        "social",
        0.12,
        0.8,
        20,
        ("view_profile", "react", "comment", "share", "follow", "message", "invite", "tag"),
    ),
    Family(
        "shop",
        0.13,
        0.7,
        25,
        (
            "view_item",
            "add_to_cart",
            "view_cart",
            "checkout",
            "wishlist",
            "compare",
            "apply_coupon",
            "remove_from_cart",
        ),
    ),
    Family(
        "media",
        0.12,
        0.8,
        90,
        ("play", "play_next", "pause", "seek", "open_playlist", "rate", "download", "cast"),
    ),
    Family(
        "pay",
        0.09,
        0.5,
        30,
        (
            "open_wallet",
            "confirm",
            "pay_bill",
            "transfer",
            "view_statement",
            "add_card",
            "topup",
            "request_money",
        ),
    ),
    Family(
        "settings",
        0.08,
        0.4,
        15,
        (
            "open_settings",
            "toggle_notifications",
            "change_privacy",
            "edit_profile",
            "change_password",
            "change_language",
            "link_account",
        ),
    ),
    Family(
        "notify", 0.06, 0.6, 5, ("open_push", "dismiss_push", "open_inbox", "mark_read", "snooze")
    ),
    Family(
        "support",
        0.07,
        0.25,
        60,
        ("open_help", "search_faq", "chat_agent", "open_ticket", "report_problem", "rate_support"),
    ),
    Family(
        "churn",
        0.05,
        0.05,
        20,
        (
            "disable_notifications",
            "unsubscribe",
            "downgrade_plan",
            "cancel_subscription",
            "delete_account",
            "uninstall",
        ),
    ),
    Family(
        "risky",
        0.07,
        0.04,
        20,
        (
            "failed_login",
            "login_new_device",
            "password_reset_request",
            "disable_2fa",
            "change_payout",
            "rapid_transfer",
            "chargeback",
        ),
    ),
)
_FAMILY_INDEX = {f.name: i for i, f in enumerate(FAMILIES)}
_REPEATABLE_VERBS = {"scroll", "refresh", "like", "view_results", "react", "view_item", "play_next"}
_REPEATABLE_VERBS |= {"seek", "failed_login", "rapid_transfer", "mark_read"}

PERSONAS = (
    "scroller",
    "shopper",
    "socializer",
    "binge_watcher",
    "money_manager",
    "casual",
    "at_risk",
    "fraudster",
)
_PERSONA_SHARE = (0.2, 0.15, 0.15, 0.15, 0.12, 0.15, 0.06, 0.02)
_PERSONA_FAMILY = {  # multipliers on the family a persona enters at a restart
    "scroller": {"feed": 3, "social": 1.5, "notify": 1.3, "media": 1.2},
    "shopper": {"shop": 3, "search": 2, "pay": 1.5},
    "socializer": {"social": 3, "feed": 1.5, "notify": 1.5},
    "binge_watcher": {"media": 3.5, "search": 1.3},
    "money_manager": {"pay": 3, "settings": 1.5, "notify": 1.3},
    "casual": {"notify": 2},
    "at_risk": {"support": 3, "settings": 2, "churn": 10, "pay": 1.3},
    "fraudster": {"risky": 20, "pay": 2.5, "settings": 2},
}
_PERSONA_HOUR_SHIFT = {"fraudster": 5, "binge_watcher": 1}  # fraud peaks after midnight
_PERSONA_WORK = {"binge_watcher": -0.15, "casual": -0.1, "money_manager": 0.15}  # shifts P(work)

# Funnel templates: (name, steps as "family.verb", personas that favour it). Each becomes
# MOTIF_VARIANTS concrete motifs (a variant "nnn" per step), partly re-drawn per domain.
_MOTIF_TEMPLATES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    (
        "purchase",
        (
            "search.query",
            "search.view_results",
            "shop.view_item",
            "shop.add_to_cart",
            "shop.view_cart",
            "shop.checkout",
            "pay.confirm",
        ),
        ("shopper",),
    ),
    (
        "quick_buy",
        ("shop.view_item", "shop.add_to_cart", "shop.checkout", "pay.confirm"),
        ("shopper",),
    ),
    (
        "coupon",
        ("shop.view_cart", "shop.apply_coupon", "shop.checkout", "pay.confirm"),
        ("shopper",),
    ),
    ("compare", ("search.query", "shop.view_item", "shop.compare", "shop.wishlist"), ("shopper",)),
    (
        "engage",
        ("feed.view_post", "social.react", "social.comment", "social.share"),
        ("socializer",),
    ),
    (
        "follow",
        ("feed.view_post", "social.view_profile", "social.follow", "social.message"),
        ("socializer", "scroller"),
    ),
    ("story", ("notify.open_push", "feed.open_story", "social.react"), ("scroller", "casual")),
    ("doomscroll", ("feed.refresh", "feed.scroll", "feed.expand", "feed.like"), ("scroller",)),
    (
        "binge",
        ("search.query", "media.play", "media.play_next", "media.play_next", "media.rate"),
        ("binge_watcher",),
    ),
    (
        "playlist",
        ("media.open_playlist", "media.play", "media.seek", "media.play_next"),
        ("binge_watcher",),
    ),
    ("offline", ("media.play", "media.download", "media.cast"), ("binge_watcher",)),
    (
        "bill",
        ("notify.open_push", "pay.open_wallet", "pay.pay_bill", "pay.confirm"),
        ("money_manager",),
    ),
    (
        "transfer",
        ("pay.open_wallet", "pay.transfer", "pay.confirm", "pay.view_statement"),
        ("money_manager",),
    ),
    ("topup", ("pay.open_wallet", "pay.add_card", "pay.topup", "pay.confirm"), ("money_manager",)),
    (
        "privacy",
        ("settings.open_settings", "settings.change_privacy", "settings.toggle_notifications"),
        ("casual",),
    ),
    (
        "help",
        ("support.open_help", "support.search_faq", "support.chat_agent", "support.rate_support"),
        ("casual", "at_risk"),
    ),
    (
        "inbox",
        ("notify.open_inbox", "notify.mark_read", "social.message"),
        ("casual", "socializer"),
    ),
    (
        "churn_cancel",
        (
            "support.open_help",
            "support.open_ticket",
            "support.chat_agent",
            "settings.open_settings",
            "churn.downgrade_plan",
            "churn.cancel_subscription",
        ),
        ("at_risk",),
    ),
    (
        "churn_quiet",
        (
            "notify.dismiss_push",
            "settings.toggle_notifications",
            "churn.disable_notifications",
            "churn.unsubscribe",
        ),
        ("at_risk",),
    ),
    (
        "churn_leave",
        (
            "support.report_problem",
            "settings.open_settings",
            "churn.delete_account",
            "churn.uninstall",
        ),
        ("at_risk",),
    ),
    (
        "account_takeover",
        (
            "risky.failed_login",
            "risky.failed_login",
            "risky.password_reset_request",
            "risky.login_new_device",
            "settings.change_password",
            "risky.disable_2fa",
            "risky.change_payout",
            "pay.transfer",
            "risky.rapid_transfer",
        ),
        ("fraudster",),
    ),
    (
        "card_testing",
        ("pay.add_card", "pay.confirm", "risky.chargeback", "pay.add_card"),
        ("fraudster",),
    ),
    (
        "cash_out",
        (
            "risky.login_new_device",
            "pay.open_wallet",
            "risky.rapid_transfer",
            "risky.rapid_transfer",
            "risky.change_payout",
        ),
        ("fraudster",),
    ),
)
_RISK_MOTIF_AFFINITY = 0.15  # ordinary users walk churn/risky funnels too, but rarely

# Per-domain profiles: family multipliers (popularity and entry), persona multipliers, weekend
# activity relative to weekdays, and extra session-start peaks (hour, width, height).
_DOMAIN_PROFILES = {
    "social": {
        "family": {"social": 2.0, "feed": 1.5, "notify": 1.3, "shop": 0.6, "pay": 0.5},
        "persona": {"socializer": 2.0, "scroller": 1.5, "money_manager": 0.5},
        "weekend": 1.15,
        "peaks": ((8, 1.0, 0.6), (18, 1.0, 0.6), (23, 2.0, 0.6)),
    },
    "commerce": {
        "family": {
            "shop": 2.2,
            "search": 1.6,
            "pay": 1.4,
            "support": 1.2,
            "media": 0.6,
            "social": 0.7,
        },
        "persona": {"shopper": 2.5, "binge_watcher": 0.5},
        "weekend": 1.4,
        "peaks": ((12.5, 1.0, 0.7), (21, 1.5, 0.7)),
    },
    "media": {
        "family": {
            "media": 2.4,
            "search": 1.2,
            "feed": 1.1,
            "shop": 0.6,
            "pay": 0.7,
            "social": 0.8,
        },
        "persona": {"binge_watcher": 2.5, "money_manager": 0.4},
        "weekend": 1.3,
        "peaks": ((22, 2.0, 1.2),),
    },
    "fintech": {
        "family": {
            "pay": 2.4,
            "settings": 1.5,
            "risky": 2.0,
            "support": 1.3,
            "notify": 1.2,
            "media": 0.4,
            "shop": 0.7,
            "social": 0.5,
        },
        "persona": {"money_manager": 3.0, "fraudster": 2.0, "binge_watcher": 0.3},
        "weekend": 0.6,
        "peaks": ((11, 3.0, 0.8), (16, 2.0, 0.5)),
    },
}

# Hour-of-day shifts of *which* family is entered: (center hour, width, log-height) bumps.
_FAMILY_RHYTHM = {
    "feed": ((8, 1.0, 0.4), (18, 1.0, 0.4), (23, 1.5, 0.3)),
    "search": ((12, 3.0, 0.2),),
    "social": ((8, 1.0, 0.3), (18, 1.0, 0.3), (22, 2.0, 0.4)),
    "shop": ((12.5, 1.0, 0.5), (21, 1.5, 0.5)),
    "media": ((21.5, 2.5, 0.8), (9, 3.0, -0.4)),
    "pay": ((12, 4.0, 0.5), (3, 3.0, -0.5)),
    "settings": ((11, 4.0, 0.3),),
    "notify": ((7.5, 1.2, 0.5),),
    "support": ((13, 4.0, 0.5), (3, 3.0, -0.6)),
    "churn": ((22, 2.0, 0.3),),
    "risky": ((3, 2.0, 1.0),),
}
_WEEKEND_FAMILY = {"media": 0.3, "shop": 0.3, "feed": 0.1, "pay": -0.3, "support": -0.3}
_LOCATION_FAMILY = {  # log-multipliers: location x family
    "home": {"media": 0.5, "shop": 0.2, "settings": 0.2, "churn": 0.2, "pay": -0.1},
    "work": {"pay": 0.4, "support": 0.3, "search": 0.2, "media": -0.6, "feed": -0.1},
    "commute": {"feed": 0.4, "social": 0.3, "media": 0.3, "notify": 0.3, "shop": -0.3},
    "other": {"shop": 0.4, "pay": 0.5, "search": 0.3, "media": -0.2},
}
_SESSION_START_FAMILY = {"notify": 1.2, "feed": 0.3, "search": 0.2, "settings": -0.3}


# ---------------------------------------------------------------------------------------------
# small vectorized helpers
# ---------------------------------------------------------------------------------------------
def _bump(center: float, width: float) -> np.ndarray:
    """Circular Gaussian over the 24 hours of a day, peak 1 at ``center``. (24,)"""
    hours = np.arange(24) + 0.5
    dist = np.abs(hours - center)
    dist = np.minimum(dist, 24 - dist)
    return np.exp(-0.5 * (dist / width) ** 2)


def _cdf_rows(weights: np.ndarray) -> np.ndarray:
    """Row-normalized cumulative sums with the last column exactly 1. (..., K)"""
    cdf = np.cumsum(weights, axis=-1)
    cdf /= cdf[..., -1:]
    cdf[..., -1] = 1.0
    return cdf


def _pick(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF sample per row: cdf (n, K), u (n,) in [0, 1) -> column index (n,)."""
    return (u[:, None] >= cdf).sum(axis=1)


class _RowSampler:
    """Sample a column of many categorical rows at once via one flat ``searchsorted``.

    Row r's cdf is stored as ``r + cdf``; drawing ``r + u`` and searching the flat array finds
    the column in O(log(rows * K)) without gathering a (n, K) block.
    """

    def __init__(self, weights: np.ndarray):
        rows, width = weights.shape
        self.width = width
        self.flat = (np.arange(rows)[:, None] + _cdf_rows(weights)).ravel()

    def __call__(self, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
        u = np.minimum(u, 1.0 - 1e-9)  # rows + u must stay below rows + 1 after rounding
        pos = np.searchsorted(self.flat, rows + u, side="right")
        return pos - rows * self.width


def _allocate(total: int, shares: np.ndarray) -> np.ndarray:
    """Split ``total`` into integer parts ∝ shares, each >= 1 (largest remainder)."""
    raw = shares / shares.sum() * (total - len(shares))
    counts = np.floor(raw).astype(np.int64)
    rest = total - len(shares) - counts.sum()
    counts[np.argsort(-(raw - counts), kind="stable")[:rest]] += 1
    return counts + 1


def _seed_rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *key]))


# ---------------------------------------------------------------------------------------------
# the world: vocabulary, per-domain popularity and transitions, funnels, context tables
# ---------------------------------------------------------------------------------------------
@dataclass
class _World:
    names: list[str]
    family: np.ndarray  # (V,) family index per type
    domains: tuple[str, ...]
    pi: np.ndarray  # (D, V) target popularity
    trans_succ: np.ndarray  # (D*V, K+1) successor type, -1 = restart
    trans_cdf: np.ndarray  # (D*V, K+1)
    entry_types: np.ndarray  # (D*F, W) types of a family, -1 padded
    entry_sampler: _RowSampler  # rows D*F: restart distribution within a family
    ctx_cdf: np.ndarray  # (rows, F) family entered at a restart, by context
    motif_seq: np.ndarray  # (D, M, Lmax) type per funnel step, -1 padded
    motif_len: np.ndarray  # (M,)
    motif_names: list[str]
    motif_affinity: np.ndarray  # (D, P, M) how much each persona favours each funnel
    persona_share: np.ndarray  # (D, P)
    persona_family: np.ndarray  # (P, F) multipliers
    session_hour: np.ndarray  # (D, 2, 24) session-start intensity by weekend flag
    weekend_weight: np.ndarray  # (D,)
    location_worker: np.ndarray  # (2, 24, L)
    location_homebody: np.ndarray  # (2, 24, L)


def _name_behaviors(family: np.ndarray, popularity: np.ndarray, rng: np.random.Generator):
    """``"{family}.{verb}.{nnn}"`` names: a family's most popular types get its first verbs
    (feed.scroll, shop.view_item, ...), the rest share verbs with a decaying preference; the
    variant numbers are shuffled so a name says nothing about popularity."""
    names = [""] * len(family)
    verb_of = np.empty(len(family), dtype=np.int64)
    for fi, fam in enumerate(FAMILIES):
        members = np.flatnonzero(family == fi)
        members = members[np.argsort(-popularity[members], kind="stable")]  # most popular first
        n, nv = members.size, len(fam.verbs)
        verbs = np.empty(n, dtype=np.int64)
        head = min(n, nv)
        verbs[:head] = np.arange(head)
        if n > nv:
            verb_weights = 1.0 / np.sqrt(np.arange(1, nv + 1))
            verbs[head:] = rng.choice(nv, size=n - nv, p=verb_weights / verb_weights.sum())
        for v in range(nv):
            same = np.flatnonzero(verbs == v)
            for member, k in zip(members[same], rng.permutation(same.size), strict=True):
                names[member] = f"{fam.name}.{fam.verbs[v]}.{k:03d}"
        verb_of[members] = verbs
    return names, verb_of


def _domain_profile(name: str, seed: int) -> dict:
    if name in _DOMAIN_PROFILES:
        return _DOMAIN_PROFILES[name]
    rng = _seed_rng(seed, 9, zlib.crc32(name.encode()))  # stable across runs (no hash())
    return {
        "family": {f.name: float(np.exp(rng.normal(0, 0.5))) for f in FAMILIES},
        "persona": {p: float(np.exp(rng.normal(0, 0.5))) for p in PERSONAS[:6]},
        "weekend": float(rng.uniform(0.7, 1.4)),
        "peaks": tuple(
            (float(rng.uniform(7, 23)), float(rng.uniform(1, 3)), float(rng.uniform(0.4, 1.0)))
            for _ in range(2)
        ),
    }


def _popularity(family: np.ndarray, z: np.ndarray, family_mult: np.ndarray, rng) -> np.ndarray:
    """Per-domain Zipf popularity from a family-aware, domain-perturbed ranking. (D, V)"""
    num_domains, num_types = family_mult.shape[0], len(family)
    prominence = np.array([f.prominence for f in FAMILIES])
    rho = DOMAIN_RANK_CORRELATION
    pi = np.empty((num_domains, num_types))
    zipf = np.arange(1, num_types + 1, dtype=np.float64) ** -ZIPF_EXPONENT
    for d in range(num_domains):
        noise = rho * z + np.sqrt(1 - rho**2) * rng.standard_normal(num_types)
        score = np.log(prominence[family] * family_mult[d, family]) + POPULARITY_NOISE * noise
        rank = np.empty(num_types, dtype=np.int64)
        rank[np.argsort(-score, kind="stable")] = np.arange(num_types)
        pi[d] = zipf[rank]
    return pi / pi.sum(axis=1, keepdims=True)


def _pick_laterals(pi, family, rng) -> np.ndarray:
    """One lateral successor per type, drawn ∝ sqrt(pi) (x4 in its own family) among the
    types at most 4x as popular as it: cumulative sums in rank order, no loop over types."""
    num_types = len(pi)
    order = np.argsort(-pi, kind="stable")
    pi_sorted, fam_sorted = pi[order], family[order]
    weight = np.sqrt(pi_sorted)
    first = np.searchsorted(-pi_sorted, -4 * pi_sorted, side="left")  # by rank: first allowed rank
    cum_all = np.concatenate([[0.0], np.cumsum(weight)])
    mass_all = cum_all[-1] - cum_all[first]
    dst_rank = np.empty(num_types, dtype=np.int64)
    u_pool, u_pick = rng.random(num_types), rng.random(num_types)
    for f in range(len(FAMILIES)):
        ranks = np.flatnonzero(fam_sorted == f)  # this family's members in rank order
        if ranks.size == 0:
            continue
        cum_f = np.concatenate([[0.0], np.cumsum(weight[ranks])])
        lo = np.searchsorted(ranks, first[ranks], side="left")
        mass_f = cum_f[-1] - cum_f[lo]
        same = u_pool[ranks] < 3 * mass_f / (3 * mass_f + mass_all[ranks])
        target_f = cum_f[lo] + u_pick[ranks] * mass_f
        in_f = np.clip(np.searchsorted(cum_f, target_f, side="right") - 1, 0, ranks.size - 1)
        target = cum_all[first[ranks]] + u_pick[ranks] * mass_all[ranks]
        anywhere = np.clip(np.searchsorted(cum_all, target, side="right") - 1, 0, num_types - 1)
        dst_rank[ranks] = np.where(same, ranks[in_f], anywhere)
    out = np.empty(num_types, dtype=np.int64)
    out[order] = order[dst_rank]
    return out


def _transitions(pi, family, repeatable, rng, base=None):
    """Sparse navigation graph for one domain (see module docstring).

    Returns successor ids (V, K), their probabilities (V, K), the restart distribution (V,)
    and the (parent, laterals) choices so another domain can reuse 1 - REWIRE of them.
    """
    num_types = len(pi)
    order = np.argsort(-pi, kind="stable")
    rank = np.empty(num_types, dtype=np.int64)
    rank[order] = np.arange(num_types)
    pi_sorted, fam_sorted = pi[order], family[order]
    capacity = np.full(num_types, CHILD_CAPACITY)  # by rank
    children = np.zeros(num_types, dtype=np.int64)  # by rank
    parent = np.full(num_types, -1, dtype=np.int64)
    src, dst, p_edge = [], [], []

    # Tree edges, most popular child first: a parent at least 1.5x as popular, with room left.
    shares = rng.uniform(*CHILD_SHARE, size=num_types)
    keep_base = rng.random(num_types) >= REWIRE
    same_family = rng.random(num_types) < 0.85
    seen = np.zeros(len(FAMILIES), dtype=np.int64)
    for r, v in enumerate(order):
        f = family[v]
        seen[f] += 1
        if seen[f] <= 2:  # the two most popular types of a family are entry hubs
            continue
        lim = np.searchsorted(-pi_sorted, -1.5 * pi[v], side="right")  # ranks with pi >= 1.5 pi_v
        need = shares[r] * pi[v] / pi_sorted[:lim]
        eligible = (capacity[:lim] >= need) & (children[:lim] < MAX_CHILDREN)
        old = -1 if base is None else base[0][v]
        if old >= 0 and keep_base[r] and rank[old] < lim and eligible[rank[old]]:
            pr = rank[old]
        else:
            same = eligible & (fam_sorted[:lim] == f)
            cand = np.flatnonzero(same if same_family[r] and same.any() else eligible)
            if cand.size == 0:
                continue  # reached only by restarts, habits and funnels
            w = (pi[v] / pi_sorted[cand]) ** 0.7
            pr = cand[rng.choice(cand.size, p=w / w.sum())]
        parent[v] = order[pr]
        capacity[pr] -= need[pr]
        children[pr] += 1
        src.append(order[pr])
        dst.append(v)
        p_edge.append(need[pr])
    src, dst, p_edge = (
        np.array(src, dtype=np.int64),
        np.array(dst, dtype=np.int64),
        np.array(p_edge),
    )

    # Back to the parent, one or two laterals, a self-repeat.
    ids = np.arange(num_types)
    has_parent = parent >= 0
    laterals = np.stack([_pick_laterals(pi, family, rng) for _ in range(2)], axis=1)
    if base is not None:
        keep = rng.random((num_types, 2)) >= REWIRE
        laterals = np.where(keep & (base[1] >= 0), base[1], laterals)
    laterals[rng.random(num_types) < 0.5, 1] = -1  # half the types have a single lateral
    laterals[(laterals == ids[:, None]) | (laterals == parent[:, None])] = -1
    lat_src = np.repeat(ids, 2)[laterals.ravel() >= 0]
    repeat = np.where(
        repeatable, rng.uniform(*REPEAT_PROB, num_types), rng.uniform(0, 0.04, num_types)
    )
    src = np.concatenate([src, ids[has_parent], lat_src, ids])
    dst = np.concatenate([dst, parent[has_parent], laterals.ravel()[laterals.ravel() >= 0], ids])
    p_edge = np.concatenate(
        [
            p_edge,
            rng.uniform(*BACK_PROB, int(has_parent.sum())),
            rng.uniform(*LATERAL_PROB, lat_src.size),
            repeat,
        ]
    )

    stay = np.bincount(src, weights=p_edge, minlength=num_types)
    p_edge *= np.minimum(1.0, MAX_STAY / np.maximum(stay, 1e-12))[src]
    # Stationarity: pi = pi @ P + (pi @ leftover) * restart needs inflow_j <= pi_j. Where the
    # graph over-supplies a type, thin all edges into it; restarts then supply the remainder,
    # so a chain that restarts with exactly `restart` has stationary distribution pi.
    inflow = np.bincount(dst, weights=pi[src] * p_edge, minlength=num_types)
    p_edge *= np.minimum(1.0, MAX_INFLOW * pi / np.maximum(inflow, 1e-300))[dst]
    restart = pi - np.minimum(inflow, MAX_INFLOW * pi)

    by_src = np.argsort(src, kind="stable")
    src, dst, p_edge = src[by_src], dst[by_src], p_edge[by_src]
    slot = np.arange(src.size) - np.searchsorted(src, src, side="left")
    k_max = MAX_CHILDREN + 4  # children + back + 2 laterals + self
    succ = np.full((num_types, k_max), -1, dtype=np.int64)
    prob = np.zeros((num_types, k_max))
    succ[src, slot], prob[src, slot] = dst, p_edge
    return succ, prob, restart / restart.sum(), (parent, laterals)


def _rhythm(rng: np.random.Generator) -> np.ndarray:
    """Log-multipliers of entering each family by (weekend flag, hour). (2, 24, F)"""
    out = np.zeros((2, 24, len(FAMILIES)))
    for f in FAMILIES:
        fi = _FAMILY_INDEX[f.name]
        amplitude = rng.uniform(0.6, 1.4)  # domains differ in how strong each rhythm is
        for center, width, height in _FAMILY_RHYTHM.get(f.name, ()):
            out[0, :, fi] += amplitude * height * _bump(center, width)
            late = center + 2 if center < 12 else center  # weekend mornings start later
            out[1, :, fi] += amplitude * height * _bump(late, width)
        out[1, :, fi] += _WEEKEND_FAMILY.get(f.name, 0.0)
    return out


def _session_hours(profile: dict) -> np.ndarray:
    """Session-start intensity over hours for weekdays and weekends. (2, 24)"""
    base = 0.08 + 0.7 * _bump(12.5, 1.2) + 1.2 * _bump(20.5, 2.2) + 0.3 * _bump(15, 3)
    weekday = base + 0.8 * _bump(8, 1.2) + 0.5 * _bump(18, 1.0)
    weekend = base + 0.8 * _bump(10.5, 2.0)
    for center, width, height in profile["peaks"]:
        weekday = weekday + height * _bump(center, width)
        weekend = weekend + 0.7 * height * _bump(center if center > 11 else center + 2, width)
    return np.stack([weekday, weekend])


def _location_tables() -> tuple[np.ndarray, np.ndarray]:
    """P(location | weekend, hour) for a commuting worker and a home-body. 2 x (2, 24, L)"""
    h = np.arange(24) + 0.5
    work_hours = ((h > 9) & (h < 17.5)).astype(float)
    night = ((h < 7) | (h > 20.5)).astype(float)
    flat = np.ones(24)
    # logits of (home, work, commute, other) by hour; first weekdays, then weekends
    worker = (
        (
            0.5 + 3 * night - 2 * work_hours,
            3.2 * work_hours - 1.5,
            3.0 * (_bump(8, 0.7) + _bump(17.8, 0.7)) - 0.5,
            0.2 + 1.6 * _bump(12.5, 0.6) + _bump(19.5, 1.2),
        ),
        (
            2.0 + 0.8 * night,
            -2.0 * flat,
            0.6 * (_bump(11, 2) + _bump(18, 2)) - 0.8,
            0.4 + 1.3 * _bump(14, 3),
        ),
    )
    homebody = (
        (2.5 + 0.8 * night, -2.5 * flat, 0.4 * _bump(10, 2) - 0.8, 0.4 + _bump(15, 3)),
        (2.2 + 0.8 * night, -3.0 * flat, 0.4 * _bump(12, 3) - 0.8, 0.6 + 1.2 * _bump(15, 3)),
    )

    def probs(table) -> np.ndarray:
        logits = np.stack([np.stack(day, axis=1) for day in table])  # (2, 24, L)
        e = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    return probs(worker), probs(homebody)


def _build_motifs(family, verb_of, pi_mean, domain_family, rng):
    """Concrete funnels from the templates.

    Returns type ids (D, M, Lmax) per domain (each step re-drawn in a domain with p = REWIRE),
    lengths (M,), names and persona affinities (D, P, M).
    """
    verb_index = {
        (f.name, v): (fi, vi) for fi, f in enumerate(FAMILIES) for vi, v in enumerate(f.verbs)
    }
    num_domains = domain_family.shape[0]

    def variant(pool: np.ndarray) -> int:  # ∝ pi^MOTIF_STEP_POWER: leans to the tail
        w = pi_mean[pool] ** MOTIF_STEP_POWER
        return pool[rng.choice(pool.size, p=w / w.sum())]

    seqs, names, fans_of, risky, weights = [], [], [], [], []
    for name, steps, fans in _MOTIF_TEMPLATES:
        pools = []
        for step in steps:
            fi, vi = verb_index[tuple(step.split("."))]
            pool = np.flatnonzero((family == fi) & (verb_of == vi))
            pools.append(pool if pool.size else np.flatnonzero(family == fi))  # tiny vocabularies
        fams = sorted({_FAMILY_INDEX[s.split(".")[0]] for s in steps})
        domain_weight = np.exp(2 * np.log(domain_family[:, fams]).mean(axis=1))  # (D,)
        for k in range(MOTIF_VARIANTS):
            shared = [variant(pool) for pool in pools]
            seqs.append(
                [
                    [
                        variant(pool) if rng.random() < REWIRE else t
                        for pool, t in zip(pools, shared, strict=True)
                    ]
                    for _ in range(num_domains)
                ]
            )
            names.append(f"{name}.{k}")
            fans_of.append(fans)
            risky.append(any(s.startswith(("churn.", "risky.")) for s in steps))
            weights.append(domain_weight * (k + 1.0) ** -1.2)  # a few variants are the common ones
    motif_len = np.array([len(s[0]) for s in seqs])
    motif_seq = np.full((num_domains, len(seqs), motif_len.max()), -1, dtype=np.int64)
    affinity = np.ones((num_domains, len(PERSONAS), len(seqs)))
    for m, per_domain in enumerate(seqs):
        motif_seq[:, m, : motif_len[m]] = per_domain
        for p, persona in enumerate(PERSONAS):
            if persona in fans_of[m]:
                affinity[:, p, m] = 8.0
            elif risky[m]:
                affinity[:, p, m] = _RISK_MOTIF_AFFINITY
        affinity[:, :, m] *= weights[m][:, None]
    return motif_seq, motif_len, names, affinity


def _build_world(num_behaviors: int, domains: tuple[str, ...], seed: int) -> _World:
    rng = _seed_rng(seed, 1)
    shares = np.array([f.share for f in FAMILIES])
    family = np.repeat(np.arange(len(FAMILIES)), _allocate(num_behaviors, shares))
    z = rng.standard_normal(num_behaviors)  # shared popularity propensity of each type
    num_types, num_fam, num_dom, num_per = num_behaviors, len(FAMILIES), len(domains), len(PERSONAS)
    profiles = [_domain_profile(d, seed) for d in domains]
    domain_family = np.array([[p["family"].get(f.name, 1.0) for f in FAMILIES] for p in profiles])
    pi = _popularity(family, z, domain_family, rng)
    names, verb_of = _name_behaviors(family, pi.mean(axis=0), rng)
    repeatable = np.array([n.split(".")[1] in _REPEATABLE_VERBS for n in names])

    # Transition graph: a base graph, then each domain keeps 1 - REWIRE of its edges.
    _, _, _, base = _transitions(pi.mean(axis=0), family, repeatable, rng)
    k_max = MAX_CHILDREN + 4
    trans_succ = np.full((num_dom * num_types, k_max + 1), -1, dtype=np.int64)
    trans_prob = np.zeros((num_dom * num_types, k_max + 1))
    restart = np.empty((num_dom, num_types))
    for d in range(num_dom):
        succ, prob, restart[d], _ = _transitions(pi[d], family, repeatable, rng, base=base)
        rows = slice(d * num_types, (d + 1) * num_types)
        trans_succ[rows, :k_max] = succ
        trans_prob[rows, :k_max] = prob
        trans_prob[rows, k_max] = 1.0 - prob.sum(axis=1)  # restart slot (successor -1)
    trans_cdf = _cdf_rows(trans_prob)

    # Restart = pick a family by context, then a type of that family by the restart weights.
    width = int(np.bincount(family).max())
    entry_types = np.full((num_dom * num_fam, width), -1, dtype=np.int64)
    entry_w = np.zeros((num_dom * num_fam, width))
    family_mass = np.zeros((num_dom, num_fam))
    for d in range(num_dom):
        for f in range(num_fam):
            members = np.flatnonzero(family == f)
            entry_types[d * num_fam + f, : members.size] = members
            entry_w[d * num_fam + f, : members.size] = restart[d, members]
            family_mass[d, f] = restart[d, members].sum()
    persona_family = np.ones((num_per, num_fam))
    for p, persona in enumerate(PERSONAS):
        for fam_name, mult in _PERSONA_FAMILY[persona].items():
            persona_family[p, _FAMILY_INDEX[fam_name]] = mult
    persona_share = np.array(
        [
            [_PERSONA_SHARE[i] * p["persona"].get(n, 1.0) for i, n in enumerate(PERSONAS)]
            for p in profiles
        ]
    )
    persona_share /= persona_share.sum(axis=1, keepdims=True)
    session_hour = np.stack([_session_hours(p) for p in profiles])  # (D, 2, 24)
    weekend_weight = np.array([p["weekend"] for p in profiles])

    # Context modulations are centred (log-mean 0 under the population's context mix) so they
    # move families between contexts without changing a family's overall share much.
    persona_log = (
        np.log(persona_family)[None]
        - np.log(np.einsum("dp,pf->df", persona_share, persona_family))[:, None]
    )  # (D, P, F)
    rhythm = np.stack([_rhythm(rng) for _ in range(num_dom)])  # (D, 2, 24, F)
    hour_w = session_hour / session_hour.sum(axis=2, keepdims=True)
    hour_w = hour_w * np.stack([5 * np.ones(num_dom), 2 * weekend_weight], 1)[:, :, None]
    hour_w /= hour_w.sum(axis=(1, 2), keepdims=True)
    rhythm -= np.einsum("dwh,dwhf->df", hour_w, rhythm)[:, None, None]
    loc_f = np.array(
        [[_LOCATION_FAMILY[loc].get(f.name, 0.0) for f in FAMILIES] for loc in LOCATIONS]
    )
    loc_f -= np.array([0.6, 0.1, 0.1, 0.2]) @ loc_f
    start_f = np.array(
        [[0.0] * num_fam, [_SESSION_START_FAMILY.get(f.name, 0.0) for f in FAMILIES]]
    )
    start_f -= np.array([0.75, 0.25]) @ start_f
    logits = (
        np.log(family_mass)[:, None, None, None, None, None, :]
        + persona_log[:, :, None, None, None, None, :]
        + rhythm[:, None, :, :, None, None, :]
        + loc_f[None, None, None, None, :, None, :]
        + start_f[None, None, None, None, None, :, :]
    )  # (D, P, weekend, hour, L, session_start, F)
    ctx_cdf = _cdf_rows(np.exp(logits - logits.max(axis=-1, keepdims=True)).reshape(-1, num_fam))

    motif_seq, motif_len, motif_names, affinity = _build_motifs(
        family, verb_of, pi.mean(axis=0), domain_family, rng
    )
    worker, homebody = _location_tables()
    return _World(
        names=names,
        family=family,
        domains=domains,
        pi=pi,
        trans_succ=trans_succ,
        trans_cdf=trans_cdf,
        entry_types=entry_types,
        entry_sampler=_RowSampler(entry_w),
        ctx_cdf=ctx_cdf,
        motif_seq=motif_seq,
        motif_len=motif_len,
        motif_names=motif_names,
        motif_affinity=affinity,
        persona_share=persona_share,
        persona_family=persona_family,
        session_hour=session_hour,
        weekend_weight=weekend_weight,
        location_worker=worker,
        location_homebody=homebody,
    )


# ---------------------------------------------------------------------------------------------
# users
# ---------------------------------------------------------------------------------------------
@dataclass
class _Users:
    domain: np.ndarray  # (U,)
    persona: np.ndarray  # (U,)
    num_events: np.ndarray  # (U,)
    session_scale: np.ndarray  # (U,) multiplies session length
    chronotype: np.ndarray  # (U,) hour shift, -2..2
    work: np.ndarray  # (U,) weight of the commuting-worker location pattern
    habit_prob: np.ndarray  # (U,) P(jump to a favourite) per step
    motif_prob: np.ndarray  # (U,) P(start a funnel) per restart
    favorites: np.ndarray  # (U, NUM_FAVORITES) type ids
    favorite_cdf: np.ndarray  # (U, NUM_FAVORITES)
    ritual_trigger: np.ndarray  # (U, NUM_RITUALS)
    ritual_next: np.ndarray  # (U, NUM_RITUALS)
    motifs: np.ndarray  # (U, NUM_FAVORITE_MOTIFS) funnel ids
    motif_cdf: np.ndarray  # (U, NUM_FAVORITE_MOTIFS)


def _build_users(world: _World, num_users: int, num_events: int, seed: int) -> _Users:
    rng = _seed_rng(seed, 2)
    num_dom = len(world.domains)
    domain_share = rng.dirichlet(np.full(num_dom, 8.0))  # unequal but comparable domain sizes
    domain = rng.choice(num_dom, size=num_users, p=domain_share)
    persona = _RowSampler(world.persona_share)(domain, rng.random(num_users))

    activity = rng.lognormal(0.0, 1.1, size=num_users)
    activity = np.minimum(activity, 20 * activity.mean())
    floor = min(3, num_events // num_users)
    counts = rng.multinomial(num_events - floor * num_users, activity / activity.sum()) + floor

    work = rng.beta(2.5, 2.0, size=num_users)
    for i, p in enumerate(PERSONAS):
        work[persona == i] = np.clip(work[persona == i] + _PERSONA_WORK.get(p, 0.0), 0, 1)
    risky_user = np.isin(persona, [PERSONAS.index("at_risk"), PERSONAS.index("fraudster")])
    motif_prob = np.where(risky_user, rng.beta(4, 5, num_users), rng.beta(2, 8, num_users))

    # Favourites and rituals: per (domain, persona) distributions over types.
    fam_mult = world.persona_family[:, world.family]  # (P, V)
    rows = domain * len(PERSONAS) + persona

    def sampler(power: float) -> _RowSampler:
        w = world.pi[:, None, :] ** power * fam_mult[None]  # (D, P, V)
        return _RowSampler(w.reshape(-1, w.shape[-1]))

    fav_sampler, pop_sampler, tail_sampler = sampler(1.0), sampler(1.0), sampler(0.7)
    favorites = fav_sampler(np.repeat(rows, NUM_FAVORITES), rng.random(num_users * NUM_FAVORITES))
    trigger = pop_sampler(np.repeat(rows, NUM_RITUALS), rng.random(num_users * NUM_RITUALS))
    ritual_next = tail_sampler(np.repeat(rows, NUM_RITUALS), rng.random(num_users * NUM_RITUALS))

    mot = world.motif_affinity[domain, persona]  # (U, M)
    mot_cdf = _cdf_rows(mot)
    motifs = np.stack(
        [_pick(mot_cdf, rng.random(num_users)) for _ in range(NUM_FAVORITE_MOTIFS)], 1
    )
    return _Users(
        domain=domain,
        persona=persona,
        num_events=counts,
        session_scale=rng.lognormal(0.0, 0.35, size=num_users),
        chronotype=rng.choice(np.arange(-2, 3), size=num_users, p=[0.1, 0.2, 0.4, 0.2, 0.1])
        + np.array([_PERSONA_HOUR_SHIFT.get(p, 0) for p in PERSONAS])[persona],
        work=work,
        habit_prob=rng.beta(1.5, 16, size=num_users),
        motif_prob=motif_prob,
        favorites=favorites.reshape(num_users, NUM_FAVORITES),
        favorite_cdf=_cdf_rows(rng.dirichlet(np.full(NUM_FAVORITES, 0.7), size=num_users)),
        ritual_trigger=trigger.reshape(num_users, NUM_RITUALS),
        ritual_next=ritual_next.reshape(num_users, NUM_RITUALS),
        motifs=motifs,
        motif_cdf=_cdf_rows(rng.dirichlet(np.ones(NUM_FAVORITE_MOTIFS), size=num_users)),
    )


# ---------------------------------------------------------------------------------------------
# one block of users: sessions -> behavior chains -> timestamps
# ---------------------------------------------------------------------------------------------
def _sessions(world, users, sl, n, days, weekend_day, rng):
    """Split each user's events into sessions and give each session a start, hour, place."""
    num_u, total = len(n), int(n.sum())
    ev_user = np.repeat(np.arange(num_u), n)
    offsets = np.concatenate([[0], np.cumsum(n)[:-1]])
    pos = np.arange(total) - offsets[ev_user]

    # Session lengths on a per-user stretched axis: a user with scale 2 has sessions twice as long.
    scale = users.session_scale[sl]
    virtual_start = np.concatenate([[0.0], np.cumsum(n / scale)[:-1]])
    vpos = virtual_start[ev_user] + pos / scale[ev_user]
    lengths = rng.lognormal(np.log(SESSION_MEDIAN_EVENTS), 0.9, size=int(vpos[-1] / 6) + 64)
    bounds = np.cumsum(lengths)
    while bounds[-1] <= vpos[-1]:
        more = rng.lognormal(np.log(SESSION_MEDIAN_EVENTS), 0.9, size=len(bounds))
        bounds = np.concatenate([bounds, bounds[-1] + np.cumsum(more)])
    segment = np.searchsorted(bounds, vpos, side="right")
    new_session = pos == 0
    new_session[1:] |= segment[1:] != segment[:-1]
    sess_of_event = np.cumsum(new_session) - 1
    sess_user = ev_user[new_session]
    num_sess = len(sess_user)

    # Start times: a day by weekday weight, an hour by the domain's rhythm, sorted per user.
    dom = users.domain[sl][sess_user]
    day_w = np.where(weekend_day[None, :], world.weekend_weight[:, None], 1.0)  # (D, days)
    day = _RowSampler(day_w)(dom, rng.random(num_sess))
    we = weekend_day[day].astype(np.int64)
    hour = _RowSampler(world.session_hour.reshape(-1, 24))(dom * 2 + we, rng.random(num_sess))
    hour = (hour + users.chronotype[sl][sess_user]) % 24
    start_s = day * 86400.0 + hour * 3600.0 + rng.random(num_sess) * 3600.0
    start_s = start_s[np.lexsort((start_s, sess_user))]  # sessions of a user are contiguous
    day = (start_s // 86400).astype(np.int64)
    hour = ((start_s % 86400) // 3600).astype(np.int64)
    we = weekend_day[np.minimum(day, len(weekend_day) - 1)].astype(np.int64)

    work = users.work[sl][sess_user][:, None]
    p_loc = work * world.location_worker[we, hour] + (1 - work) * world.location_homebody[we, hour]
    loc = _pick(_cdf_rows(p_loc), rng.random(num_sess))

    persona = users.persona[sl][sess_user]
    ctx = ((((dom * len(PERSONAS) + persona) * 2 + we) * 24 + hour) * len(LOCATIONS) + loc) * 2
    ev_ctx = ctx[sess_of_event] + new_session  # session_start flag is the last context axis
    return ev_user, offsets, new_session, sess_of_event, sess_user, start_s, loc, ev_ctx


def _chains(world, users, sl, n, offsets, new_session, ev_ctx, rng, bar) -> np.ndarray:
    """Advance every user's behavior chain one position per step, all users at once."""
    order = np.argsort(-n, kind="stable")  # longest first: active users are a prefix
    lens = n[order]
    starts = offsets[order]
    uid = np.arange(sl.start, sl.stop)[order]
    dom = users.domain[uid]
    habit_p, motif_p = users.habit_prob[uid], users.motif_prob[uid]
    fav, fav_cdf = users.favorites[uid], users.favorite_cdf[uid]
    trig, trig_next = users.ritual_trigger[uid], users.ritual_next[uid]
    mots, mot_cdf = users.motifs[uid], users.motif_cdf[uid]
    num_types, num_fam = len(world.names), len(FAMILIES)
    dom_rows, dom_fam = dom * num_types, dom * num_fam

    cur = np.zeros(len(n), dtype=np.int64)
    motif = np.full(len(n), -1, dtype=np.int64)
    motif_pos = np.zeros(len(n), dtype=np.int64)
    out = np.empty(int(n.sum()), dtype=np.int64)
    active = np.searchsorted(-lens, -np.arange(int(lens[0])), side="left")  # users with n > t
    done = 0
    for t, k in enumerate(active):
        e = starts[:k] + t  # flat event index of each active user's t-th event
        u = rng.random((7, k))
        c_cur, c_mot, c_pos, d = cur[:k], motif[:k], motif_pos[:k], dom[:k]
        nxt = np.empty(k, dtype=np.int64)
        fresh = new_session[e]

        # 1. inside a funnel: next step with p = MOTIF_CONTINUE, else abandon it
        in_motif = (c_mot >= 0) & ~fresh
        cont = in_motif & (u[0] < MOTIF_CONTINUE)
        i = np.flatnonzero(cont)
        if i.size:
            m, p = c_mot[i], c_pos[i] + 1
            nxt[i] = world.motif_seq[d[i], m, p]
            c_pos[i] = p
            c_mot[i[p + 1 >= world.motif_len[m]]] = -1
        c_mot[(in_motif & ~cont) | fresh] = -1
        free = ~cont & ~fresh

        # 2. personal ritual: after its trigger this user does its own follow-up
        hit = (trig[:k] == c_cur[:, None]) & free[:, None]
        ritual = hit.any(axis=1) & (u[1] < RITUAL_PROB)
        i = np.flatnonzero(ritual)
        if i.size:
            nxt[i] = trig_next[i, hit[i].argmax(axis=1)]
        free &= ~ritual

        # 3. habit: jump to one of the user's favourites
        habit = free & (u[2] < habit_p[:k])
        i = np.flatnonzero(habit)
        if i.size:
            nxt[i] = fav[i, np.minimum(_pick(fav_cdf[i], u[3, i]), NUM_FAVORITES - 1)]
        free &= ~habit

        # 4. the domain's navigation graph (last slot = restart)
        i = np.flatnonzero(free)
        restart = fresh.copy()
        if i.size:
            row = dom_rows[i] + c_cur[i]
            nxt[i] = world.trans_succ[row, _pick(world.trans_cdf[row], u[3, i])]
            restart[i[nxt[i] < 0]] = True

        # 5. restart: a favourite funnel, or a family chosen by context then its entry type
        i = np.flatnonzero(restart)
        if i.size:
            start_motif = u[4, i] < motif_p[i]
            j = i[start_motif]
            if j.size:
                m = mots[j, np.minimum(_pick(mot_cdf[j], u[5, j]), NUM_FAVORITE_MOTIFS - 1)]
                nxt[j] = world.motif_seq[d[j], m, 0]
                c_mot[j], c_pos[j] = m, 0
            j = i[~start_motif]
            if j.size:
                fam = _pick(world.ctx_cdf[ev_ctx[e[j]]], u[5, j])
                rows = dom_fam[j] + fam
                nxt[j] = world.entry_types[rows, world.entry_sampler(rows, u[6, j])]
        cur[:k] = nxt
        out[e] = nxt
        done += k
        if t % 256 == 255:
            bar.update(done)
            done = 0
    bar.update(done)
    return out


def _timestamps(world, behavior, new_session, sess_of_event, sess_user, start_s, rng):
    """Bursty in-session gaps (by the previous event's family), sessions kept apart."""
    gap_median = np.array([f.gap_s for f in FAMILIES])[world.family]
    prev = np.concatenate([[0], behavior[:-1]])
    gap = rng.lognormal(np.log(gap_median[prev]), 0.9)
    pause = rng.random(len(gap)) < 0.04  # answered a call, switched apps
    gap[pause] *= rng.uniform(5, 30, size=int(pause.sum()))
    gap = np.maximum(gap, 0.5)
    gap[new_session] = 0.0
    within = np.cumsum(gap)
    within -= within[new_session][sess_of_event]  # seconds since the session's first event
    within_ms = np.round(within * 1000).astype(np.int64)
    last = np.concatenate([np.flatnonzero(new_session)[1:] - 1, [len(behavior) - 1]])
    duration_ms = within_ms[last]

    # Push a session later if it would overlap the previous one of the same user:
    # start'_k = max(start_k, start'_{k-1} + dur_{k-1} + gap) == cummax(start - c) + c.
    start_ms = np.round(start_s * 1000).astype(np.int64)
    step = duration_ms + MIN_SESSION_GAP_S * 1000
    c = np.cumsum(step) - step  # exclusive cumsum over all sessions
    first = np.concatenate([[True], sess_user[1:] != sess_user[:-1]])
    c -= c[first][np.cumsum(first) - 1]  # ... restarted per user
    big = np.int64(1) << np.int64(40)  # keeps the running max inside each user
    shifted = np.maximum.accumulate(start_ms - c + sess_user * big) - sess_user * big + c
    sess_index = np.arange(len(sess_user)) - np.flatnonzero(first)[np.cumsum(first) - 1]
    return shifted[sess_of_event] + within_ms, sess_index[sess_of_event]


# ---------------------------------------------------------------------------------------------
# public entry point
# ---------------------------------------------------------------------------------------------
def behavior_family(behavior: pl.Expr) -> pl.Expr:
    """Family of a behavior name (``"shop.add_to_cart.017"`` -> ``"shop"``), named "family"."""
    return behavior.str.split_exact(".", 1).struct.field("field_0").alias("family")


def _validate(num_events, num_users, num_behaviors, domains, seed, start, days) -> dt.date:
    def is_int(x):
        return isinstance(x, int | np.integer) and not isinstance(x, bool)

    if not is_int(num_events) or num_events < 100:
        raise ValueError(f"num_events must be an integer >= 100, got {num_events!r}")
    if num_users is not None and (not is_int(num_users) or not 1 <= num_users <= num_events):
        raise ValueError(f"num_users must be an integer in [1, num_events], got {num_users!r}")
    if not is_int(num_behaviors) or not 20 <= num_behaviors <= 20_000:
        raise ValueError(f"num_behaviors must be an integer in [20, 20000], got {num_behaviors!r}")
    if isinstance(domains, str) or not domains:
        raise ValueError(f"domains must be a non-empty tuple of names, got {domains!r}")
    if any(not isinstance(d, str) or not d.strip() for d in domains):
        raise ValueError(f"domains must be non-empty strings, got {domains!r}")
    if len(set(domains)) != len(domains):
        raise ValueError(f"domains must be unique, got {domains!r}")
    if not is_int(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not is_int(days) or not 1 <= days <= 3650:
        raise ValueError(f"days must be an integer in [1, 3650], got {days!r}")
    try:
        return dt.date.fromisoformat(str(start))
    except ValueError as err:
        raise ValueError(f"start must be a date like '2026-01-05', got {start!r}") from err


_ARROW_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("timestamp", pa.timestamp("us")),
        ("behavior", pa.string()),
        ("location", pa.string()),
        ("domain", pa.string()),
        ("session_id", pa.int64()),
    ]
)
assert list(EVENT_SCHEMA) == _ARROW_SCHEMA.names[:-1]


def generate_user_events(
    out_dir: Path,
    *,
    num_events: int = 1_000_000,
    num_users: int | None = None,
    num_behaviors: int = 600,
    domains: tuple[str, ...] = ("social", "commerce", "media", "fintech"),
    seed: int = 0,
    start: str = "2026-01-05",
    days: int = 28,
    progress: bool = True,
) -> dict:
    """Write ``out_dir/events.parquet`` (+ ``manifest.json``) and return the manifest.

    Columns: the canonical :data:`~behave.data.schema.EVENT_SCHEMA` plus ``session_id`` (Int64,
    0-based per user), sorted by (user_id, timestamp). Same arguments -> byte-identical file.
    """
    start_date = _validate(num_events, num_users, num_behaviors, domains, seed, start, days)
    domains = tuple(domains)
    num_users = int(num_users or max(1, num_events // EVENTS_PER_USER))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    world = _build_world(num_behaviors, domains, seed)
    users = _build_users(world, num_users, num_events, seed)
    weekend_day = (start_date.weekday() + np.arange(days)) % 7 >= 5
    epoch_us = int(
        (dt.datetime.combine(start_date, dt.time()) - dt.datetime(1970, 1, 1)).total_seconds()
    )
    epoch_us *= 1_000_000

    width = max(7, len(str(num_users - 1)))
    user_ids = pl.Series("user_id", [f"u{i:0{width}d}" for i in range(num_users)], dtype=pl.String)
    behavior_names = pl.Series("behavior", world.names, dtype=pl.String)
    location_names = pl.Series("location", LOCATIONS, dtype=pl.String)
    domain_names = pl.Series("domain", domains, dtype=pl.String)

    cum = np.cumsum(users.num_events)
    cuts = (
        np.searchsorted(cum, np.arange(BLOCK_EVENTS, int(cum[-1]), BLOCK_EVENTS), side="left") + 1
    )
    edges = np.unique(np.concatenate([[0], cuts, [num_users]]))
    target = out_dir / EVENTS_FILE
    tmp = out_dir / f".{EVENTS_FILE}.{os.getpid()}.tmp"
    behavior_counts = np.zeros(len(world.names), dtype=np.int64)
    num_sessions = 0
    t_min, t_max = None, None
    try:
        with (
            tqdm(
                total=num_events, unit="ev", unit_scale=True, disable=not progress, desc="events"
            ) as bar,
            pq.ParquetWriter(tmp, _ARROW_SCHEMA, compression="zstd") as writer,
        ):
            for b, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
                rng = _seed_rng(seed, 3, b)  # per block: results do not depend on block order
                sl = slice(int(lo), int(hi))
                n = users.num_events[sl]
                ev_user, offsets, new_session, sess_of_event, sess_user, start_s, loc, ev_ctx = (
                    _sessions(world, users, sl, n, days, weekend_day, rng)
                )
                behavior = _chains(world, users, sl, n, offsets, new_session, ev_ctx, rng, bar)
                ts_ms, session_id = _timestamps(
                    world, behavior, new_session, sess_of_event, sess_user, start_s, rng
                )
                frame = pl.DataFrame(
                    {
                        "user_id": user_ids.gather(ev_user + sl.start),
                        "timestamp": pl.Series(epoch_us + ts_ms * 1000).cast(pl.Datetime("us")),
                        "behavior": behavior_names.gather(behavior),
                        "location": location_names.gather(loc[sess_of_event]),
                        "domain": domain_names.gather(users.domain[sl][ev_user]),
                        "session_id": pl.Series(session_id, dtype=pl.Int64),
                    }
                )
                table = frame.to_arrow(compat_level=pl.CompatLevel.oldest()).cast(_ARROW_SCHEMA)
                writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
                behavior_counts += np.bincount(behavior, minlength=len(world.names))
                num_sessions += len(sess_user)
                lo_ts, hi_ts = frame["timestamp"].min(), frame["timestamp"].max()
                t_min = lo_ts if t_min is None else min(t_min, lo_ts)
                t_max = hi_ts if t_max is None else max(t_max, hi_ts)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)

    observed = np.sort(behavior_counts[behavior_counts > 0])[::-1]
    zipf_fit = None
    if observed.size >= 12:  # slope of log count vs log rank over ranks 6 .. V/2
        ranks = np.arange(1, observed.size + 1)[5 : observed.size // 2]
        fit = np.polyfit(np.log(ranks), np.log(observed[5 : observed.size // 2]), 1)
        zipf_fit = round(float(-fit[0]), 3)
    domain_events = np.bincount(users.domain, weights=users.num_events, minlength=len(domains))
    family_sizes = np.bincount(world.family, minlength=len(FAMILIES))
    params = {
        "num_events": num_events,
        "num_users": num_users,
        "num_behaviors": num_behaviors,
        "domains": list(domains),
        "seed": seed,
        "start": start_date.isoformat(),
        "days": days,
    }
    extra = {
        "extra_columns": {"session_id": "Int64, 0-based session index within the user"},
        "time": "user-local wall clock, no time zone",
        "time_range": [str(t_min), str(t_max)],
        "num_sessions": num_sessions,
        "vocabulary": world.names,
        "behaviors_observed": int(observed.size),
        "behavior_families": {f.name: int(c) for f, c in zip(FAMILIES, family_sizes, strict=True)},
        "family_verbs": {f.name: list(f.verbs) for f in FAMILIES},
        "probe_families": ["churn", "risky"],
        "zipf_exponent": ZIPF_EXPONENT,  # of each domain's target popularity
        "zipf_exponent_fit": zipf_fit,  # realized, all domains pooled
        "personas": list(PERSONAS),
        "funnels": world.motif_names,
        "locations": list(LOCATIONS),
        "domain_events": {d: int(c) for d, c in zip(domains, domain_events, strict=True)},
        "domain_users": {d: int((users.domain == i).sum()) for i, d in enumerate(domains)},
        "persona_users": {p: int((users.persona == i).sum()) for i, p in enumerate(PERSONAS)},
    }
    return write_manifest(
        out_dir,
        kind="user-events",
        generator=GENERATOR,
        generator_version=GENERATOR_VERSION,
        seed=seed,
        params=params,
        files=[EVENTS_FILE],
        extra=extra,
    )
