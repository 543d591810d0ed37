"""bench_peers: livercad and its three peers, each in its own process, on a tiny phantom; the benches' model choice."""

from __future__ import annotations

from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
PEERS = ("monai_segresnet_3mm", "nnunet_fast_3mm", "naive_monai_2d")


def test_peers_quick_run_reports_speed_memory_and_ratio(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_peers

    out = bench_peers.main(["--quick", "--random-weights", "--backend", "torch", "--precision", "fp32",
                            "--no-save"])
    assert '"benchmark": "peers"' in capsys.readouterr().out
    peers = out["peers"]
    assert peers["order"] == ["livercad", *PEERS]
    lc = peers["livercad"]
    assert "error" not in lc, lc
    assert lc["seconds_per_volume"] > 0 and 0 < lc["stage1_seconds_per_volume"] <= lc["seconds_per_volume"]
    assert lc["peak_rss_mb"] >= lc["rss_mb_at_start"] > 0
    for name in PEERS:
        r = peers[name]
        assert "error" not in r, (name, r)
        assert r["seconds_per_volume"] > 0 and r["peak_rss_mb"] > 0, (name, r)
        assert r["livercad_ratio"] == pytest.approx(r["seconds_per_volume"] / lc["seconds_per_volume"], rel=0.01)
        assert set(r["stages_s"]) == {"read", "preprocess", "segment", "postprocess", "write"}
    assert peers["monai_segresnet_3mm"]["config"]["roi_size"] == [32, 32, 32]  # --quick shrinks the peers
    assert peers["nnunet_fast_3mm"]["windows"] == 1 and max(peers["nnunet_fast_3mm"]["grid"]) <= 32  # 12 mm grid
    fastest = min(PEERS, key=lambda n: peers[n]["seconds_per_volume"])
    assert peers["fastest_peer"] == fastest
    assert peers["target_met"] == (lc["seconds_per_volume"] < peers[fastest]["seconds_per_volume"])
    assert "probabilities" not in peers["naive_monai_2d"]  # kept only for bench_pipeline's agreement
    assert out["model"] == {"source": "random", "path": None}


def test_nnunet_plan_follows_the_planning_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from bench_peers import nnunet_steps, nnunet_strides, peer_configs

    assert nnunet_strides([128, 112, 112], 6) == [[1, 1, 1], *[[2, 2, 2]] * 4, [2, 1, 1]]
    assert nnunet_steps(124, 112, 0.5) == [0, 12] and nnunet_steps(112, 112, 0.5) == [0]
    assert nnunet_steps(300, 128, 0.5) == [0, 57, 115, 172]
    full = peer_configs(False, 3.0)
    assert full["nnunet_fast_3mm"]["features_per_stage"] == [32, 64, 128, 256, 320, 320]
    assert full["nnunet_fast_3mm"]["num_classes"] == 118 and full["monai_segresnet_3mm"]["out_channels"] == 105
    assert full["monai_segresnet_3mm"]["roi_size"] == [96, 96, 96] and full["monai_segresnet_3mm"]["overlap"] == 0.25


@pytest.mark.parametrize("script", ["bench_pipeline", "bench_peers"])
def test_missing_shipped_model_stops_with_one_line(script: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import importlib

    import bench_peers

    mod = importlib.import_module(script)
    monkeypatch.setattr(bench_peers, "default_bundle_path", lambda: tmp_path / "liver")
    with pytest.raises(SystemExit) as exc:
        mod.parse_args([])
    msg = str(exc.value.code)
    assert "\n" not in msg and str(tmp_path / "liver" / "segmenter.pt") in msg
    assert "make model" in msg and "--random-weights" in msg and "--segmenter" in msg
    with pytest.raises(SystemExit) as exc:
        mod.parse_args(["--segmenter", str(tmp_path / "nowhere")])
    assert "\n" not in str(exc.value.code) and "nowhere" in str(exc.value.code)
    (tmp_path / "liver").mkdir()
    (tmp_path / "liver" / "segmenter.pt").write_bytes(b"")
    assert mod.parse_args([]).model == {"source": "shipped", "path": str(tmp_path / "liver" / "segmenter.pt")}
    assert mod.parse_args(["--random-weights"]).model == {"source": "random", "path": None}
    with pytest.raises(SystemExit):  # exclusive
        mod.parse_args(["--random-weights", "--segmenter", str(tmp_path / "liver")])
