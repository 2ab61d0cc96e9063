"""Prioritised replay: segment trees against naive sums, sampling proportions, weights, FIFO eviction, memory."""

import numpy as np
import pytest

from attn_dqn_controller.learning.replay import MinTree, PrioritizedReplayBuffer, SumTree
from attn_dqn_controller.observation import ObservationSpec


def fill(buffer, n, start=0, priority=None):
    """Add n transitions whose obs are all equal to their id (start, start+1, ...)."""
    ids = np.arange(start, start + n, dtype=np.float32)
    obs = np.repeat(ids[:, None], buffer.obs_size, axis=1)
    return buffer.add_batch(obs, ids.astype(np.int64), ids, obs + 0.5, np.zeros(n, bool),
                            np.full(n, 0.9), priority=priority)


def test_sum_tree_total_and_prefix_search_match_cumsum():
    rng = np.random.default_rng(1)
    tree = SumTree(10)                          # not a power of two: 16 leaves, 6 unused
    assert (tree.offset, tree.depth) == (16, 4)
    values = rng.random(10)
    values[[2, 7]] = 0.0                        # zero-priority slots must never be found
    tree.update(np.arange(10), values)
    assert tree.total == pytest.approx(values.sum())
    cumsum = np.cumsum(values)
    # random queries, plus ones just either side of every boundary (exact boundaries are rounding-dependent)
    queries = np.concatenate([rng.random(1000) * cumsum[-1], cumsum[:-1] - 1e-9, cumsum[:-1] + 1e-9, [0.0]])
    expected = np.searchsorted(cumsum, queries, side="right")
    np.testing.assert_array_equal(tree.find_prefix(queries), expected)
    assert not np.isin(tree.find_prefix(queries), [2, 7]).any()
    # a query at (or, from rounding, just past) the total lands on the last non-empty leaf
    assert tree.find_prefix([cumsum[-1] * (1 + 1e-12)])[0] == 9


def test_tree_batch_updates_with_repeats_and_rebuild():
    tree, mins = SumTree(5), MinTree(5)
    tree.update([0, 1, 2, 3, 4], [1.0, 2.0, 3.0, 4.0, 5.0])
    mins.update([0, 1, 2, 3, 4], [1.0, 2.0, 3.0, 4.0, 5.0])
    tree.update([1, 3, 1], [10.0, 0.5, 20.0])   # repeated index: the last value wins
    mins.update([1, 3, 1], [10.0, 0.5, 20.0])
    np.testing.assert_array_equal(tree.get([0, 1, 2, 3, 4]), [1.0, 20.0, 3.0, 0.5, 5.0])
    assert tree.total == pytest.approx(29.5)
    assert mins.min == 0.5
    rebuilt = SumTree(5)
    rebuilt.rebuild([1.0, 20.0, 3.0, 0.5, 5.0])
    np.testing.assert_allclose(rebuilt.tree, tree.tree)
    with pytest.raises(IndexError, match=r"\[0, 5\)"):
        tree.update([5], [1.0])


def test_sampling_follows_priorities_chi_square():
    buffer = PrioritizedReplayBuffer(8, 2, alpha=0.6, seed=123)
    fill(buffer, 8)
    td = np.array([0.1, 0.5, 1.0, 2.0, 4.0, 0.0, 8.0, 3.0])
    buffer.update_priorities(np.arange(8), td)
    p = (np.abs(td) + 1e-6) ** 0.6
    expected_share = p / p.sum()
    counts = np.zeros(8)
    for _ in range(100):
        counts += np.bincount(buffer.sample(256, beta=0.4)["indices"], minlength=8)
    expected = expected_share * counts.sum()
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 24.3                          # chi-square, 7 dof, p = 0.001
    np.testing.assert_allclose(counts / counts.sum(), expected_share, atol=0.01)
    assert counts[5] == 0                       # priority eps^0.6 ~ 2.5e-4: practically never


def test_stratified_sampling_covers_every_segment():
    buffer = PrioritizedReplayBuffer(4, 1, alpha=1.0, seed=0)
    fill(buffer, 4)
    buffer.update_priorities(np.arange(4), [1.0, 1.0, 1.0, 1.0])
    # four equal segments and four equal priorities: each slot exactly once, in order
    np.testing.assert_array_equal(buffer.sample(4)["indices"], [0, 1, 2, 3])


def test_priority_update_and_max_priority_for_new_items():
    buffer = PrioritizedReplayBuffer(6, 3, alpha=0.5, eps=1e-6, seed=0)
    fill(buffer, 3)
    np.testing.assert_allclose(buffer.priorities(), [1.0, 1.0, 1.0])   # initial max priority is 1
    buffer.update_priorities([0, 2], [-3.0, 8.0])
    np.testing.assert_allclose(buffer.priorities(), [np.sqrt(3 + 1e-6), 1.0, np.sqrt(8 + 1e-6)])
    assert buffer.max_priority == pytest.approx(np.sqrt(8 + 1e-6))
    fill(buffer, 1, start=3)                                              # new item: max so far
    assert buffer.priorities()[3] == pytest.approx(np.sqrt(8 + 1e-6))
    fill(buffer, 1, start=4, priority=[15.0])                            # Ape-X style initial |td|
    assert buffer.priorities()[4] == pytest.approx(np.sqrt(15 + 1e-6))
    assert buffer.total_priority == pytest.approx(buffer.priorities().sum())
    with pytest.raises(IndexError, match="holds no transition"):
        buffer.update_priorities([5], [1.0])
    with pytest.raises(ValueError, match="finite"):
        buffer.update_priorities([0], [np.nan])


def test_importance_weights_hand_computed():
    # alpha = 0.5 and |td| = 1, 4, 9 give priorities 1, 2, 3; P = 1/6, 2/6, 3/6 and N = 3.
    # w = (N P)^-beta / max w, and max w belongs to p_min = 1: w = (p / 1)^-beta.
    buffer = PrioritizedReplayBuffer(3, 1, alpha=0.5, eps=1e-12, seed=7)
    fill(buffer, 3)
    buffer.update_priorities([0, 1, 2], [1.0, 4.0, 9.0])
    for beta, expected in ((1.0, [1.0, 0.5, 1 / 3]), (0.5, [1.0, 2 ** -0.5, 3 ** -0.5]), (0.0, [1.0, 1.0, 1.0])):
        batch = buffer.sample(64, beta=beta)
        np.testing.assert_allclose(batch["weights"], np.array(expected)[batch["indices"]], rtol=1e-6)
    # the normaliser is the whole buffer's minimum, not the batch's: slot 0 may be absent from a batch
    batch = buffer.sample(1, beta=1.0)
    assert batch["weights"][0] == pytest.approx([1.0, 0.5, 1 / 3][batch["indices"][0]], rel=1e-6)


def test_sample_returns_the_stored_transitions():
    buffer = PrioritizedReplayBuffer(10, 4, seed=0)
    fill(buffer, 5)
    batch = buffer.sample(32, beta=0.4)
    ids = batch["indices"]
    assert batch["obs"].dtype == np.float32 and batch["obs"].shape == (32, 4)
    np.testing.assert_array_equal(batch["obs"][:, 0], ids)
    np.testing.assert_array_equal(batch["next_obs"][:, 0], ids + 0.5)
    np.testing.assert_array_equal(batch["action"], ids)
    np.testing.assert_array_equal(batch["reward"], ids)
    np.testing.assert_allclose(batch["discount"], 0.9)
    assert batch["done"].dtype == np.float32 and not batch["done"].any()


def test_ring_eviction_removes_oldest_items_and_their_priority_mass():
    buffer = PrioritizedReplayBuffer(4, 2, alpha=1.0, eps=1e-12, seed=0)
    fill(buffer, 2, start=0, priority=[100.0, 100.0])     # heavy items that will be evicted
    fill(buffer, 2, start=2, priority=[1.0, 2.0])
    slots = fill(buffer, 2, start=4, priority=[3.0, 4.0])  # wraps around onto slots 0 and 1
    np.testing.assert_array_equal(slots, [0, 1])
    assert len(buffer) == 4 and buffer.pos == 2
    live_ids = set(buffer.obs[:, 0].astype(int))
    assert live_ids == {2, 3, 4, 5}
    assert buffer.total_priority == pytest.approx(1.0 + 2.0 + 3.0 + 4.0)  # no stale 200 left behind
    assert buffer._min.min == pytest.approx(1.0)
    seen = set()
    for _ in range(50):
        seen |= set(buffer.sample(16)["obs"][:, 0].astype(int))
    assert seen == {2, 3, 4, 5}


def test_uniform_mode_keeps_no_trees():
    buffer = PrioritizedReplayBuffer(100, 3, alpha=0.0, seed=0)
    assert not buffer.prioritized and buffer._sum is None
    fill(buffer, 10)
    batch = buffer.sample(1000, beta=1.0)
    np.testing.assert_array_equal(batch["weights"], np.ones(1000, np.float32))
    assert batch["indices"].max() < 10
    assert len(np.unique(batch["indices"])) == 10
    buffer.update_priorities(batch["indices"][:3], [1.0, 2.0, 3.0])   # accepted, no effect
    assert buffer.nbytes == PrioritizedReplayBuffer.estimate_nbytes(100, 3, alpha=0.0)


def test_memory_of_one_million_default_transitions_fits_4gb():
    size = ObservationSpec().size
    assert size == 367
    estimate = PrioritizedReplayBuffer.estimate_nbytes(1_000_000, size)
    # obs + next_obs: 2 * 367 * 2 bytes; action/reward/discount 4 bytes each, done 1; two 2^20-leaf trees
    assert estimate == 1_000_000 * (2 * 367 * 2 + 13) + 2 * (2 * 2 ** 20 * 8)
    assert estimate <= 4e9
    small = PrioritizedReplayBuffer(1000, size)
    assert small.nbytes == PrioritizedReplayBuffer.estimate_nbytes(1000, size)
    assert "1,000 transitions" in small.memory_report() and "float16" in small.memory_report()


def test_float16_storage_precision_on_contract_ranges():
    buffer = PrioritizedReplayBuffer(1000, 367, seed=0)
    obs = np.random.default_rng(0).uniform(-2, 2, (1000, 367)).astype(np.float32)
    buffer.add_batch(obs, np.zeros(1000, int), np.zeros(1000), obs, np.zeros(1000, bool), np.ones(1000))
    error = np.abs(buffer.obs.astype(np.float32) - obs)
    assert error.max() <= 2.0 ** -10 + 1e-9            # half an ulp of float16 on [1, 2]
    small = np.abs(obs) <= 1.0
    assert error[small].max() <= 2.0 ** -11 + 1e-9     # and on [0.5, 1]


def test_bad_input_is_named():
    buffer = PrioritizedReplayBuffer(4, 3, seed=0)
    with pytest.raises(ValueError, match="empty replay buffer"):
        buffer.sample(2)
    with pytest.raises(ValueError, match=r"obs must have shape \(N, 3\)"):
        buffer.add_batch(np.zeros((2, 4)), [0, 0], [0, 0], np.zeros((2, 4)), [0, 0], [1, 1])
    with pytest.raises(ValueError, match="reward must hold 2 values"):
        buffer.add_batch(np.zeros((2, 3)), [0, 0], [0], np.zeros((2, 3)), [0, 0], [1, 1])
    with pytest.raises(ValueError, match="float16 range"):
        buffer.add_batch(np.full((1, 3), 1e6), [0], [0], np.zeros((1, 3)), [0], [1])
    with pytest.raises(ValueError, match="capacity 4"):
        fill(buffer, 5)
    with pytest.raises(ValueError, match="alpha"):
        PrioritizedReplayBuffer(4, 3, alpha=1.5)
    fill(buffer, 1)
    with pytest.raises(ValueError, match="beta"):
        buffer.sample(2, beta=-0.1)


def test_state_dict_round_trip_resumes_identically(tmp_path):
    buffer = PrioritizedReplayBuffer(8, 2, seed=3)
    fill(buffer, 6)
    buffer.update_priorities([0, 1, 2], [5.0, 0.1, 2.0])
    state = buffer.state_dict()
    path = tmp_path / "replay.npz"
    np.savez(path, **state)                          # the resume file format: no pickled objects
    other = PrioritizedReplayBuffer(8, 2, seed=99)
    with np.load(path, allow_pickle=False) as data:
        other.load_state_dict({key: data[key] for key in data.files})
    assert (other.size, other.pos, other.max_priority) == (6, 6, buffer.max_priority)
    np.testing.assert_allclose(other.priorities(), buffer.priorities())
    a, b = buffer.sample(16), other.sample(16)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    with pytest.raises(ValueError, match="capacity=8.*capacity=9"):
        PrioritizedReplayBuffer(9, 2).load_state_dict(state)
