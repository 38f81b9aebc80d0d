"""The sequential fit: each layer's merge fitted on the model already merged below it."""
import copy

import pytest
import torch

from peerprune import anatomy, heads, peers, sequential

MASK = torch.tensor([[1.0, 0, 1, 0], [0, 1, 0, 0]])


def test_with_every_head_kept_and_nothing_pruned_below_the_fit_gives_the_teacher_back(tiny_rte):
    teacher, loader = tiny_rte
    stats = sequential.drift_stats(copy.deepcopy(teacher), teacher, loader, 0)
    every = list(range(4))
    w = heads.output_projection(teacher, 0).weight.detach().double()
    assert torch.allclose(sequential.fit_joint(stats, every, 1e-10), w, atol=1e-6)
    assert torch.allclose(sequential.fit_rescale(stats, every, 1e-10), w, atol=1e-6)
    assert sequential.fit_error(stats, w, every) == pytest.approx(0.0, abs=1e-10)


def test_each_layer_fits_its_target_at_least_as_well_as_the_independent_merge(tiny_rte):
    """On the statistics the sequential fit sees at each layer (the student merged below it),
    its weights are the least-squares optimum; the teacher-fitted joint merge and Kwon's
    teacher-fitted scales are other points of the same problem, so they fit worse."""
    teacher, loader = tiny_rte
    stats = anatomy.collect_stats(teacher, loader)
    kept = heads.kept_from_mask(MASK)
    for merge, independent in (("joint", peers.joint_merge_weight),
                               ("rescale", peers.rescale_weight)):
        student = copy.deepcopy(teacher)
        weights, errors = sequential.sequential_weights(student, teacher, MASK, loader, merge,
                                                        rho=1e-10)
        probe = copy.deepcopy(teacher)  # the same model below each layer, to compare on
        for l, k in enumerate(kept):
            seen = sequential.drift_stats(probe, teacher, loader, l)
            other = independent(stats[l], k, 1e-10)
            assert errors[l] == pytest.approx(sequential.fit_error(seen, weights[l], k), abs=1e-9)
            assert errors[l] <= sequential.fit_error(seen, other, k) + 1e-9
            assert errors[l] < 1.0  # better than dropping the layer's attention output
            with torch.no_grad():
                heads.output_projection(probe, l).weight.copy_(weights[l].float())
        if merge == "rescale":  # one scale per kept head, pruned columns zero
            w0 = heads.output_projection(teacher, 0).weight.detach().double()
            for h in range(4):
                cols = stats[0].block([h])
                ratio = weights[0][:, cols] / w0[:, cols]
                assert torch.allclose(ratio, ratio.flatten()[0].expand_as(ratio), rtol=1e-4)
                assert (h in kept[0]) or bool((weights[0][:, cols] == 0).all())


def test_the_sequential_model_ends_closer_to_the_teacher_than_the_independent_merge(tiny_rte):
    teacher, loader = tiny_rte
    stats = anatomy.collect_stats(teacher, loader)
    assert sequential.output_drift(copy.deepcopy(teacher), teacher, loader) == 0.0
    for merge in sequential.SEQUENTIAL_MERGES:
        independent = peers.merged_weights(stats, MASK, None, merge, 1e-3)
        fitted, _ = sequential.sequential_weights(copy.deepcopy(teacher), teacher, MASK, loader,
                                                  merge, 1e-3)
        drift = {name: sequential.output_drift(
                     peers.merge_and_prune(copy.deepcopy(teacher), w, MASK), teacher, loader)
                 for name, w in (("independent", independent), ("sequential", fitted))}
        assert 0 < drift["sequential"] < drift["independent"], (merge, drift)


def test_only_joint_and_rescale_are_fitted_sequentially(tiny_rte):
    teacher, loader = tiny_rte
    with pytest.raises(ValueError, match="solves merge joint or rescale, not 'pairwise'"):
        sequential.sequential_weights(copy.deepcopy(teacher), teacher, MASK, loader, "pairwise")


def test_a_layer_s_view_stops_at_the_layer_and_equals_the_whole_pass(tiny_rte):
    from peerprune.anatomy import Capture
    teacher, loader = tiny_rte
    batch = {k: v for k, v in next(iter(loader)).items() if k != "labels"}
    with torch.no_grad(), Capture(teacher) as cap:
        whole = teacher(**batch, output_hidden_states=True).hidden_states
    for l in range(2):
        with torch.no_grad():
            o, r = sequential.layer_view(teacher, batch, l)
        assert torch.equal(o, cap.context[l]) and torch.equal(r, whole[l])
    ran = []
    hook = heads.layers(teacher)[1].register_forward_pre_hook(lambda *a: ran.append(1))
    with torch.no_grad():
        sequential.layer_view(teacher, batch, 0)
    hook.remove()
    assert not ran  # the layers above the one asked for did not run


def test_on_the_first_layer_the_fits_are_the_teacher_fitted_merges(tiny_rte):
    teacher, loader = tiny_rte
    stats = anatomy.collect_stats(teacher, loader)[0]
    drift = sequential.drift_stats(copy.deepcopy(teacher), teacher, loader, 0)
    kept = heads.kept_from_mask(MASK)[0]
    assert torch.allclose(sequential.fit_joint(drift, kept, 1e-3),
                          peers.joint_merge_weight(stats, kept, 1e-3), atol=1e-8)
    assert torch.allclose(sequential.fit_rescale(drift, kept, 1e-3),
                          peers.rescale_weight(stats, kept, 1e-3), atol=1e-8)


def test_carrying_the_hidden_states_up_fits_what_the_definition_fits_running_each_layer_thrice(
        tiny_rte):
    """`sequential_weights` carries each model's hidden states up a layer at a time; fitting
    each layer from `drift_stats` (whole passes up to the layer) gives the same weights. The
    teacher runs each layer once and the student twice, not every layer below again."""
    teacher, loader = tiny_rte
    for merge in sequential.SEQUENTIAL_MERGES:
        student = copy.deepcopy(teacher)
        calls = {"teacher": [0, 0], "student": [0, 0]}
        hooks = [layer.register_forward_pre_hook(lambda *a, n=name, l=l: calls[n].__setitem__(
                     l, calls[n][l] + 1))
                 for name, model in (("teacher", teacher), ("student", student))
                 for l, layer in enumerate(heads.layers(model))]
        fast, _ = sequential.sequential_weights(student, teacher, MASK, loader, merge, 1e-3)
        for h in hooks:
            h.remove()
        batches = len(loader)
        assert calls == {"teacher": [2 * batches, batches],  # layer 0 also when its input is read
                         "student": [3 * batches, 2 * batches]}
        slow_student = copy.deepcopy(teacher)
        for l, kept in enumerate(heads.kept_from_mask(MASK)):
            stats = sequential.drift_stats(slow_student, teacher, loader, l)
            w = sequential.FITS[merge](stats, kept, 1e-3)
            with torch.no_grad():
                heads.output_projection(slow_student, l).weight.copy_(w.float())
            assert torch.allclose(fast[l], w, atol=1e-9), (merge, l)
