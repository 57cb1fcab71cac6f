"""The answer decision (rag.decision): signals measured on every weighed draft, shown or withheld, and the rule over them."""

import pytest

from rag.answer import ask
from rag.citations import REFUSAL
from rag.decision import withheld
from rag.evaluate import Case, score
from rag.grounding import Verdict
from rag.schema import SentenceCheck, Signals

SOUND = Signals(best_score=0.62, uncovered_share=0.0, matched_share=1.0, supported_share=1.0, mean_support=0.93, min_support=0.93,
                sentences=1, broad=False)
DOUBTED = SentenceCheck(text="They will sign a treaty.", supported=False, support=0.1, reason="the quotes do not state it (support 0.10)")


@pytest.mark.parametrize("doubt,reason", [
    ({"matched_share": 0.0, "supported_share": 0.0}, "the answer is not supported by the passages"),
    ({"uncovered_share": 0.5}, "the passages do not address the question (population not found)"),
    ({"supported_share": 0.0}, "the passages do not state what the draft says (the quotes do not state it (support 0.10))"),
])
def test_each_doubt_withholds_a_draft_with_its_reason(doubt, reason):
    verdict = Verdict(None, uncovered_terms={"population"}, question_terms={"population", "armenia"})
    assert withheld(SOUND, verdict, [DOUBTED], 0.45) is None
    assert withheld(SOUND.model_copy(update=doubt), verdict, [DOUBTED], 0.45) == reason


def test_a_withheld_draft_keeps_its_signals_and_is_labelled_for_fitting(mock_engine):
    # measured: asked for Armenia's population, the model answered with another passage's figure
    case = Case(id="pop", question="What is the population of Armenia?", reference_answer="-", expected_keywords=["million"])
    answer = ask(mock_engine, case.question)
    assert answer.refused and answer.answer == REFUSAL and "population" in answer.refusal_reason, answer.refusal_reason
    assert answer.signals is not None and answer.signals.uncovered_share > 0.45 and answer.signals.sentences >= 1
    result = score(case, answer, None)
    assert result.signals == answer.signals.model_dump() and result.draft_right is False


def test_a_shown_answer_carries_its_signals_and_a_right_label(mock_engine):
    case = Case(id="meet", question="Who will meet in Moscow next week, according to Putin?", reference_answer="-",
                expected_keywords=["deputy prime ministers"])
    answer = ask(mock_engine, case.question)
    assert not answer.refused and answer.signals.supported_share == 1.0 and answer.signals.uncovered_share == 0.0
    assert score(case, answer, None).draft_right is True


def test_a_question_nothing_answers_is_refused_before_any_draft_is_weighed(mock_engine):
    answer = ask(mock_engine, "How do I bake sourdough bread?")
    assert answer.refused and answer.signals is None
