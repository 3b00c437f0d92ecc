"""Models: each registered model's card and held-out figures, and which one is 'latest'."""

from __future__ import annotations

import streamlit as st
from anigenre.jobs.web import cards, context
from anigenre.models.manifest import Manifest
from anigenre.models.synced import Registry


def render() -> None:
    st.title("Models")
    s = context.settings()
    # An s3:// data dir: models trained on other machines show up.
    registry = Registry(s)
    models = cards.models_newest_first(registry.models())
    if not models:
        st.info(
            f"No trained models in {s.data_location('models')}. `anigenre train` makes one "
            "(`make demo` runs the whole pipeline)."
        )
        return
    served = context.options().model
    aliases = registry.names()  # model id -> its aliases ('production', ...)
    st.caption(
        f"{len(models)} model(s), newest first. `latest` is {models[0].manifest.model_id}; "
        f"the Try a poster page uses `{served}`. `anigenre models promote MODEL --as NAME` "
        "names a model (`--model NAME` predicts with it)."
    )
    for i, listed in enumerate(models):
        model_id = listed.manifest.model_id
        label = cards.header(listed, aliases.get(model_id, []), served)
        with st.expander(label, expanded=i == 0):
            _card(s.data_dir, listed.manifest)


def _card(data_dir, manifest: Manifest) -> None:
    facts = cards.card(manifest)
    left, right = st.columns([2, 3])
    with left:
        st.markdown("\n".join(f"- **{k}**: {v}" for k, v in facts.items()))
    with right:
        n = manifest.metrics_summary.get("n_test")
        st.markdown(f"**Held-out test split** ({n} posters)" if n else "**Held-out test split**")
        st.table(cards.figures_table(manifest))
    per_genre = cards.per_genre_table(data_dir, manifest)
    if per_genre is not None:
        st.markdown("**Per genre** (test split; the threshold is what 'passes' means)")
        st.dataframe(
            per_genre,
            width="stretch",
            column_config={
                c: st.column_config.NumberColumn(format="%.3f")
                for c in ("AP", "F1", "ROC AUC", "threshold")
            },
        )


if __name__ == "__main__":
    render()
