"""Full: the embedded CSBM graph ('small', 1200 nodes), all attacks,
paradigms and defences, 2 seeds: the README's table (tens of minutes on
2 CPU cores)."""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.name = 'full'
  c.seeds = (0, 1)
  c.data = ml_collections.ConfigDict(
    dict(source='csbm', csbm_config='small', data_dir='', name='cora')
  )
  c.attacks = (
    'sba_samp',
    'sba_gen',
    'gta',
    'ugba',
    'dpgba',
    'cpgba',
    'crossba',
  )
  c.paradigms = ('gcn', 'gat', 'sage', 'grace', 'gprompt')
  c.defences = ('none', 'prune', 'od', 'rigbd')
  # Victims trained under each defence (RIGBD: supervised ones only). The
  # released code runs defences for GSL and GCL, not GPL.
  c.defence_paradigms = ('gcn', 'grace')
  # CP-GBA step 0: project features to this width (0 = off).
  c.project_dim = 0
  c.project_epochs = 200
  c.pretrain = ml_collections.ConfigDict(
    dict(hidden=64, n_layers=2, epochs=200, learning_rate=0.01)
  )
  c.attack = ml_collections.ConfigDict(
    dict(
      target=0,
      num_poison=40,
      baseline_size=3,
      outer_size=256,
      surrogate_hidden=64,
      surrogate_epochs=200,
      generator=dict(
        epochs=80,
        inner_steps=5,
        learning_rate=1e-3,
        lambda_homo=50.0,
        homo_tau=0.5,
        detector_hidden=64,
        lambda_detector=1.0,
        detector_steps=5,
        # DPGBA's w_E (3 on Cora in the released code). 0 here: the
        # measured tables predate the term (README); paper.py turns it on.
        lambda_embed=0.0,
      ),
      cpgba=dict(
        size=5,
        num_triggers=70,
        per_node=3,
        max_subgraphs=5000,
        homo_hidden=64,
        attach_threshold=0.1,
        label_centers=100,
        epochs=80,
        inner_steps=5,
        learning_rate=1e-3,
        prompt_learning_rate=1e-2,
        lambda_homo=10.0,
        homo_tau=0.5,
        # Periodic model selection (the released code: every 10 epochs a
        # prompt victim is refitted and the best validation ASR kept;
        # `selection.py`). 0 = off (the final repository).
        select_every=10,
        select_epochs=100,
      ),
      # CrossBA backdoors the pre-trained GNN (`crossba.py`): a 3-node
      # trigger graph on the lowest-degree tenth of the attacker's nodes;
      # r_n, r_f, r_g as the released code's --reg_param_trigger_n/_f and
      # --reg_param_gnn. reg_dormant (r_d, not in the code) keeps the
      # trigger inert on the clean backbone: without it the learned trigger
      # flips the clean backbone's prompt victim too (an evasion attack,
      # clean-victim ASR 1.0 on the 'small' graph; README).
      crossba=dict(
        size=3,
        poison_rate=0.1,
        selection='degree_min',
        epochs=100,
        trigger_steps=1,
        gnn_steps=1,
        trigger_learning_rate=0.01,
        gnn_learning_rate=1e-3,
        reg_trigger_n=0.05,
        reg_trigger_f=0.05,
        reg_gnn=0.5,
        reg_dormant=0.5,
      ),
    )
  )
  # Victims are seeded with seed + seed_offset: their initialisation and
  # dropout masks differ from the attacker's surrogate (the attacker knows
  # the architecture family, not the weights). 0 = the shared-seed protocol
  # (the released code seeds everything from one --seed).
  c.victim = ml_collections.ConfigDict(
    dict(
      seed_offset=1000,
      hidden=64,
      dropout=0.5,
      epochs=200,
      learning_rate=0.01,
      weight_decay=5e-4,
      grace=dict(
        hidden=64,
        proj=64,
        epochs=100,
        learning_rate=1e-3,
        weight_decay=1e-5,
        p_edge=(0.2, 0.4),
        p_feat=(0.3, 0.4),
        tau=0.4,
        probe_epochs=200,
        probe_learning_rate=0.01,
        probe_weight_decay=1e-4,
      ),
      prompt=dict(epochs=300, learning_rate=0.01, weight_decay=0.0),
      rigbd=dict(passes=10, drop_rate=0.5, retrain_epochs=200),
    )
  )
  c.defence = ml_collections.ConfigDict(
    # od_max_hidden caps the OD autoencoder's widths (2d/3, d/3 in the code)
    # so wide features (CiteSeer's 3703) fit; 500 CSBM features are below.
    dict(
      prune_threshold=0.1, od_epochs=300, od_percentile=97.0, od_max_hidden=512
    )
  )
  return c
