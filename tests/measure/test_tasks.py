from __future__ import annotations

import re

from measure.tasks import ANALOGY_SECTIONS, build_offline_items, write_offline_tasks


def test_analogy_items_are_seeded_four_choice_with_one_gold():
    items = build_offline_items("analogy_capitals", 30, seed=7)
    assert items == build_offline_items("analogy_capitals", 30, seed=7)
    assert items != build_offline_items("analogy_capitals", 30, seed=8)
    for item in items:
        assert len(item["choices"]) == 4 and len(set(item["choices"])) == 4
        b, c = re.fullmatch(r"\S+ is to (\S+) as (\S+) is to", item["query"]).groups()
        assert item["choices"][item["gold"]].strip() not in {b, c}
    assert {i["gold"] for i in items} == {0, 1, 2, 3}  # the gold position is shuffled


def test_each_analogy_section_exists_and_the_gold_answer_is_right():
    from measure.tasks import analogy_sections

    sections = analogy_sections()
    for name, section in ANALOGY_SECTIONS.items():
        quads = {f"{a} is to {b} as {c} is to": d for a, b, c, d in sections[section]}
        for item in build_offline_items(name, 10, seed=0):
            assert item["choices"][item["gold"]] == " " + quads[item["query"]]


def test_next_sentence_items_come_from_the_evaluation_part(enwiki):
    items = build_offline_items("next_sentence", 10, seed=0)
    text = " ".join(enwiki.evaluation).replace("\n", " ")
    for item in items:
        assert item["query"] in text
        assert item["choices"][item["gold"]].strip() in text
        assert len(item["choices"]) == 4


def test_task_files_are_keyed_by_content(tmp_path):
    d1, h1 = write_offline_tasks(["analogy_family"], 5, 1, root=tmp_path)
    d2, h2 = write_offline_tasks(["analogy_family"], 6, 1, root=tmp_path)
    assert d1 != d2 and h1 != h2
    assert (d1 / "analogy_family.yaml").is_file() and (d1 / "complete").is_file()
