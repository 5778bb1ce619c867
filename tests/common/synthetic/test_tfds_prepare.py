"""`tfds_builders.prepare`: generated data is prepared without tfds' noise."""

from common.synthetic import tfds_builders as tb


def test_prepare_prints_nothing_and_writes_the_dataset(tmp_path, capsys):
  builder = tb.get_builder(
    'arithmetic_tasks', tmp_path, 'tiny', seed=1, train_size=12
  )
  tb.prepare(builder)
  out, err = capsys.readouterr()
  assert 'Downloading' not in out + err
  assert '\x1b[A' not in out + err  # tqdm's cursor-up escape
  assert len(builder.as_data_source()['train']) == 12
  tb.prepare(builder)  # prepared: a no-op, still quiet
  out, err = capsys.readouterr()
  assert out + err == ''
