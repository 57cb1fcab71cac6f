"""The real embedded model (Qwen2.5-Coder-1.5B, in-process) answering over the seed corpus."""

import pytest

from rag.answer import ask
from rag.citations import REFUSAL
from rag.schema import Turn

pytestmark = pytest.mark.llm

FACTS = [
    ("Who will meet in Moscow next week, according to Putin?", "deputy prime minister"),
    ("What did Pashinyan say Armenia was ready to unblock?", "transport"),
    ("Which Russian official said the West was trying to interfere in the Armenia-Azerbaijan conflict?", "Shoigu"),
    ("In what year did the Soviet Union collapse?", "1991"),
    ("How many lives did the conflict claim after the Soviet Union collapsed?", "30,000"),
    ("Who set up the checkpoint along Karabakh's only land link in April?", "Azerbaijan"),
]


@pytest.mark.parametrize("question,expected", FACTS)
def test_factual_question_is_answered_with_verified_citation(real_engine, question, expected):
    answer = ask(real_engine, question)
    assert not answer.refused, answer.refusal_reason
    assert expected.lower() in answer.answer.lower()
    assert answer.citations and all(c.verified for c in answer.citations)
    assert "[" in answer.answer  # markers inserted after generation
    assert answer.backend.llm == "embedded:qwen2.5-coder-1.5b"


@pytest.mark.parametrize("question", ["What is the population of Armenia?", "When was Vladimir Putin born?"])
def test_question_outside_the_corpus_is_refused(real_engine, question):
    answer = ask(real_engine, question)
    assert answer.refused and answer.answer == REFUSAL
    assert answer.citations == []


def test_follow_up_uses_the_history(real_engine):
    history = [
        Turn(role="user", content="Which Russian official said the West was trying to interfere in the conflict?"),
        Turn(role="assistant", content="Russian Defense Minister Sergei Shoigu [1]."),
    ]
    answer = ask(real_engine, "Which news agency reported his remarks?", history)
    assert answer.standalone_question and "Shoigu" in answer.standalone_question
    assert not answer.refused and "RIA" in answer.answer


def test_the_model_judges_support_by_its_yes_probability(real_engine):
    """Groundwork for entailment checks (bench/verifier.py): P(yes) is high for a quote that states the claim."""
    from llama_index.core.base.llms.types import ChatMessage, MessageRole

    def p_yes(quote: str, claim: str) -> float:
        user = f"Passages:\n[1] {quote}\n\nDoes passage [1] state that {claim} Reply yes or no."
        return real_engine.llm.yes_probability([ChatMessage(role=MessageRole.USER, content=user)])

    quote = "The Russian leader also announced that next week, deputy prime ministers of Russia, Azerbaijan and Armenia will meet."
    stated = p_yes(quote, "deputy prime ministers of the three countries will meet next week?")
    unrelated = p_yes(quote, "the conflict claimed some 30,000 lives?")
    assert 0.0 <= unrelated < 0.5 < stated <= 1.0, (stated, unrelated)
