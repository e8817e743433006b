"""Episodes the service keeps for ``POST /act``, and the micro-batcher that steps them together.

A *session* is one running episode of the offline-RL policy: its return-to-go, timestep and
recurrent state (for Decision Mamba the SSM cache, O(1) per action). Clients send only the newest
observation and reward; the server keeps the rest between requests.

Concurrent steps of different episodes run as one model call: each request becomes a job on an
asyncio queue; one worker takes the first job, waits ``max_wait_s`` for others to join (up to
``max_batch_size``), then makes one :meth:`Policy.act` call per group — new episodes together
(``Policy.start(n, targets)``), running ones merged with :func:`merge_episodes` and split back with
:func:`split_episodes`. Jobs that arrive while the model runs form the next batch. The model runs
in a worker thread, so the event loop keeps accepting requests meanwhile.

Why not BentoML's own adaptive batching (``@bentoml.api(batchable=True)``)? A batchable API maps
a list of inputs to a list of outputs: one request cannot answer 404 (unknown episode) or 409
(step already in flight) while its neighbours get 200, and an exception fails the whole batch.
Here each job resolves its own future with a result or its own error.

Each episode's state is replaced only after its step succeeded, and only while its client still
waits (a step whose client went away did not happen). One step per episode may be in flight; a
second one is refused (409) rather than queued, since the order of two concurrent observations
of one episode is undefined. Sessions idle for ``ttl_s`` are forgotten; at most
``max_sessions`` live at once (a new one beyond: 429). State lives in this process: with several
workers or replicas, route an episode's requests to one of them (sticky on ``episode_id``).

No BentoML import: unit-tested with a plain asyncio loop (tests/serving/test_act.py).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from behave.inference.offline_rl import Episodes, Policy, merge_episodes, split_episodes

__all__ = [
    "SessionError",
    "UnknownEpisode",
    "EpisodeBusy",
    "StepMismatch",
    "TooManySessions",
    "NonFiniteAction",
    "ActResult",
    "BatchStats",
    "SessionStore",
]


class SessionError(Exception):
    """A request the store refuses; ``status`` is its HTTP status, ``loc`` the field at fault."""

    status = 400
    kind = "session_error"

    def __init__(self, message: str, loc: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message, self.loc = message, loc


class UnknownEpisode(SessionError):
    status, kind = 404, "unknown_episode"


class EpisodeBusy(SessionError):
    status, kind = 409, "episode_busy"


class StepMismatch(SessionError):
    status, kind = 409, "step_mismatch"


class TooManySessions(SessionError):
    status, kind = 429, "too_many_sessions"


class NonFiniteAction(SessionError):
    status, kind = 400, "non_finite_action"


@dataclass
class ActResult:
    action: list[float]  # (A,) env units
    episode_id: str
    step: int  # t: index of this action in its episode
    return_to_go: float  # R̂_t the action was conditioned on


@dataclass
class BatchStats:
    """What the batcher did since start-up (session steps and starts only)."""

    model_calls: int = 0
    episode_steps: int = 0
    multi_episode_calls: int = 0
    largest_batch: int = 0

    def record(self, n: int) -> None:
        self.model_calls += 1
        self.episode_steps += n
        self.multi_episode_calls += n > 1
        self.largest_batch = max(self.largest_batch, n)


@dataclass
class _Session:
    episodes: Episodes  # this one episode, past its first action
    step: int  # actions taken so far = index of the next one
    last_used: float
    busy: bool = False  # a step is queued or running


@dataclass
class _Job:
    """One start or step waiting for the model; ``outcome`` is set by the model thread."""

    episode_id: str
    observation: np.ndarray  # (S,)
    future: asyncio.Future | None = None
    session: _Session | None = None  # step: the episode it advances; start: None
    target_return: float = 0.0  # start
    reward: float = 0.0  # step
    reserved: bool = False  # start: still counted in SessionStore._starting
    outcome: tuple[Episodes, np.ndarray, float] | BaseException | None = None


class SessionStore:
    """Live episodes of one :class:`Policy`, stepped in batches. Use from one event loop."""

    def __init__(
        self,
        policy: Policy,
        *,
        ttl_s: float = 600.0,
        max_sessions: int = 1024,
        max_batch_size: int = 64,
        max_wait_s: float = 0.002,
        default_target_return: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        if ttl_s <= 0 or max_sessions < 1 or max_batch_size < 1 or max_wait_s < 0:
            raise ValueError(
                "need ttl_s > 0, max_sessions >= 1, max_batch_size >= 1, max_wait_s >= 0"
            )
        self.policy = policy
        self.ttl_s, self.max_sessions = float(ttl_s), int(max_sessions)
        self.max_batch_size, self.max_wait_s = int(max_batch_size), float(max_wait_s)
        if default_target_return is None:  # the bundle's, if it has one
            default_target_return = getattr(policy, "meta", {}).get("target_return")
        self.default_target_return = default_target_return
        self.stats = BatchStats()
        self._clock, self._on_batch = clock, on_batch
        self._sessions: OrderedDict[str, _Session] = OrderedDict()  # least recently used first
        self._gone: OrderedDict[str, str] = OrderedDict()  # why a recent id is no longer live
        self._starting = 0  # starts queued or running (they count against max_sessions)
        self._queue: asyncio.Queue[_Job] | None = None
        self._worker: asyncio.Task | None = None
        # one model call at a time, off the event loop
        self._model_thread = ThreadPoolExecutor(1, thread_name_prefix="behave-act")

    # ---- requests -------------------------------------------------------------------------
    @property
    def live(self) -> int:
        self._expire()
        return len(self._sessions)

    async def start(self, observation, target_return: float | None = None) -> ActResult:
        """A new episode: its first action (step 0) and ``episode_id``."""
        self._expire()
        if len(self._sessions) + self._starting >= self.max_sessions:
            raise TooManySessions(
                f"too many live episodes ({self.max_sessions}): DELETE /act/{{episode_id}} "
                f"finished ones, or retry once idle ones expire ({self.ttl_s:g} s)"
            )
        target = self.default_target_return if target_return is None else target_return
        if target is None:
            raise SessionError(
                "target_return is required: the model has no default", ("target_return",)
            )
        job = _Job(uuid.uuid4().hex, self._observation(observation), target_return=float(target))
        job.reserved, self._starting = True, self._starting + 1
        try:
            return await self._submit(job)
        finally:
            self._release(job)

    async def step(
        self, episode_id: str, observation, reward: float, expected_step: int | None = None
    ) -> ActResult:
        """The next action of a live episode, given its newest observation and the reward its
        previous action earned. ``expected_step``: refuse (409) unless it is the next step."""
        session = self._lookup(episode_id)
        if session.busy:
            raise EpisodeBusy(
                f"episode_id {episode_id!r} already has a step in flight; send the next "
                "observation after its answer",
                ("episode_id",),
            )
        if expected_step is not None and expected_step != session.step:
            raise StepMismatch(
                f"episode_id {episode_id!r} is at step {session.step}, not {expected_step} "
                "(a retried request? its step was already taken)",
                ("step",),
            )
        job = _Job(
            episode_id, self._observation(observation), session=session, reward=float(reward)
        )
        session.busy = True  # released by the worker, with the new state
        self._touch(episode_id, session)
        return await self._submit(job)

    def delete(self, episode_id: str) -> None:
        """Forgets an episode (404 if it is not live); a step in flight still gets its answer."""
        self._lookup(episode_id)
        del self._sessions[episode_id]
        self._forget(episode_id, "was deleted")

    def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self._model_thread.shutdown(wait=False, cancel_futures=True)

    # ---- bookkeeping ---------------------------------------------------------------------
    def _observation(self, observation) -> np.ndarray:
        obs = np.asarray(observation, np.float32).reshape(-1)
        if obs.shape[0] != self.policy.state_dim:  # the schema checks this; a safety net
            raise SessionError(
                f"an observation has {self.policy.state_dim} values: {obs.shape[0]} given",
                ("observation",),
            )
        return obs

    def _lookup(self, episode_id: str) -> _Session:
        self._expire()
        session = self._sessions.get(episode_id)
        if session is None:
            why = self._gone.get(episode_id)
            raise UnknownEpisode(
                f"episode_id {episode_id!r} {why}" if why else f"unknown episode_id {episode_id!r}",
                ("episode_id",),
            )
        return session

    def _touch(self, episode_id: str, session: _Session) -> None:
        session.last_used = self._clock()
        self._sessions.move_to_end(episode_id)  # keeps the dict ordered by last use

    def _expire(self) -> None:
        now = self._clock()
        while self._sessions:
            episode_id, session = next(iter(self._sessions.items()))
            if now - session.last_used <= self.ttl_s:
                break
            if session.busy:  # in use: not idle
                self._touch(episode_id, session)
                continue
            del self._sessions[episode_id]
            self._forget(episode_id, f"expired: idle for more than {self.ttl_s:g} s")

    def _release(self, job: _Job) -> None:
        if job.reserved:
            job.reserved, self._starting = False, self._starting - 1

    def _forget(self, episode_id: str, why: str) -> None:
        self._gone[episode_id] = why
        while len(self._gone) > 4 * self.max_sessions:
            self._gone.popitem(last=False)

    # ---- the batcher ---------------------------------------------------------------------
    async def _submit(self, job: _Job) -> ActResult:
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done() or self._worker.get_loop() is not loop:
            self._queue = asyncio.Queue()
            self._worker = loop.create_task(self._run(), name="behave-act-batcher")
        job.future = loop.create_future()
        self._queue.put_nowait(job)
        return await job.future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self._queue.get()]
            if self.max_wait_s > 0 and self._queue.qsize() + 1 < self.max_batch_size:
                await asyncio.sleep(self.max_wait_s)  # let concurrent steps join this call
            while len(jobs) < self.max_batch_size and not self._queue.empty():
                jobs.append(self._queue.get_nowait())
            live = [job for job in jobs if not job.future.cancelled()]
            try:
                if live:
                    await loop.run_in_executor(self._model_thread, self._compute, live)
            except BaseException as err:  # noqa: BLE001  (shut down, or the thread pool failed)
                for job in live:
                    job.outcome = job.outcome or err
                self._finish(jobs)
                if isinstance(err, asyncio.CancelledError):
                    raise
                continue
            self._finish(jobs)

    def _compute(self, jobs: list[_Job]) -> None:
        """Runs in the model thread: one policy call per group of jobs that can share one."""
        groups: dict[object, list[_Job]] = {}
        for job in jobs:
            groups.setdefault(self._merge_key(job), []).append(job)
        for group in groups.values():
            try:
                self._call(group)
            except Exception as err:  # noqa: BLE001  (the group's requests get a 500)
                for job in group:
                    job.outcome = err

    @staticmethod
    def _merge_key(job: _Job) -> object:
        if job.session is None:
            return "start"  # fresh episodes start together; running ones cannot join them
        history = job.session.episodes.history  # window mode: equal lengths merge
        return ("step", history["timesteps"].shape[1] if history else 0)

    def _call(self, group: list[_Job]) -> None:
        observations = np.stack([job.observation for job in group])  # (n, S)
        if group[0].session is None:
            targets = torch.tensor([job.target_return for job in group])
            episodes = self.policy.start(len(group), targets)
            actions = self.policy.act(episodes, observations, None)  # (n, A)
        else:
            # copies: each session keeps its old state until _finish commits the new one
            episodes = merge_episodes([job.session.episodes for job in group])
            rewards = np.asarray([job.reward for job in group], np.float32)
            actions = self.policy.act(episodes, observations, rewards)
        returns_to_go = episodes.return_to_go.cpu().numpy()  # (n,) R̂_t the actions answer
        parts = split_episodes(episodes, [1] * len(group))
        for job, part, action, rtg in zip(group, parts, actions, returns_to_go, strict=True):
            job.outcome = (part, action, float(rtg))
        self.stats.record(len(group))
        if self._on_batch is not None:
            self._on_batch(len(group))

    def _finish(self, jobs: list[_Job]) -> None:
        """Back on the event loop: commit each successful step and answer its request."""
        for job in jobs:
            session, outcome = job.session, job.outcome
            if session is not None:
                session.busy = False
            self._release(job)  # a start becomes a session below, or nothing
            if job.future.cancelled():
                continue  # the client is gone: its step did not happen
            if isinstance(outcome, BaseException):
                job.future.set_exception(outcome)
                continue
            episodes, action, rtg = outcome
            if not np.isfinite(action).all():  # the state is not kept either
                job.future.set_exception(
                    NonFiniteAction(
                        "the model's action is not finite: the observation (or reward) is far "
                        "outside the range it was trained on",
                        ("observation",),
                    )
                )
                continue
            if session is None:
                step = 0
                self._sessions[job.episode_id] = _Session(episodes, 1, self._clock())
            else:
                step = session.step
                if self._sessions.get(job.episode_id) is session:  # not deleted meanwhile
                    session.episodes, session.step = episodes, step + 1
                    self._touch(job.episode_id, session)
            job.future.set_result(ActResult(action.tolist(), job.episode_id, step, rtg))
