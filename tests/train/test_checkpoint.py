import jax.numpy as jnp
import numpy as np

from gru_jax.core.rundir import RunDir
from gru_jax.infer.checkpoint import checkpoint_manager, read_meta
from gru_jax.train import checkpoint


def _state(v):
    return {"w": jnp.full((3,), float(v)), "step": jnp.asarray(v, jnp.int32)}


def test_keeps_latest_n_and_the_best_by_validation_eer(tmp_path):
    manager = checkpoint_manager(RunDir(tmp_path), keep=2, create=True)
    eers = {10: 0.30, 20: 0.05, 25: None, 30: 0.20, 35: None, 40: 0.25, 50: None, 60: 0.22}
    for step, eer in eers.items():
        checkpoint.save(manager, step, _state(step), {"step": step}, eer)
        manager.wait_until_finished()
    # latest two + the lowest EER; steps saved between validations (no EER) go like the others
    assert manager.all_steps() == [20, 50, 60]
    assert manager.best_step() == 20
    state, meta = checkpoint.restore(manager, _state(0), 20)
    np.testing.assert_array_equal(state["w"], np.full(3, 20.0))
    assert meta == {"step": 20} and read_meta(manager, 60) == {"step": 60}
    manager.close()
