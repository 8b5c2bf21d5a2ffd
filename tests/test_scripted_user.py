"""The scripted user: answers from the profile, confirms writes, moves through stages, stops when
satisfied or stuck; and with a perfect agent it reaches reward 1 on every airline-mini task."""

from __future__ import annotations

import asyncio
import json

import pytest

from calib.envs import STOP, Task, UserSimulator, load_domain
from calib.envs.users.scripted import ScriptedUser, asked_slots, is_confirmation_request

# ----------------------------------------------------------------------------- a perfect agent


def perfect_episode(domain, task):
    """Plays the expected actions stage by stage, asking for confirmation before each write, then
    states the required outputs (refusing when the stage is a forbidden request). This is the loop the
    oracle policy follows when it makes no mistakes."""
    env, user = domain.new_env(task), ScriptedUser()
    transcript = [("user", user.reset(task))]
    replies = []

    def say(text):
        replies.append(text)
        answer = user.step(text)
        transcript.extend([("agent", text), ("user", answer)])
        return answer

    assert say("Could you please tell me your user id?") == f"My user id is {task.user_id}."
    for stage in task.profile["stages"]:
        for i in stage["actions"]:
            action = task.actions[i]
            if domain.catalogue.is_write(action["name"]):
                answer = say(f"I will {action['name']} with {json.dumps(action['arguments'])}. "
                             "Do you confirm (yes/no)?")
                assert answer.lower().startswith("yes"), (task.task_id, transcript)
            env.step(action["name"], action["arguments"])
            if env.done:
                return env, user, replies, transcript
        parts = []
        if stage["refusal"]:
            parts.append("I'm sorry, but I cannot do that under our policy.")
        if stage["outputs"]:
            parts.append("Here is what you asked for: " + ", ".join(stage["outputs"]) + ".")
        say(" ".join(parts) or "Done.")
    return env, user, replies, transcript


@pytest.mark.parametrize("spec", ["airline-mini", "airline-mini:1"])
def test_perfect_agent_with_scripted_user_solves_every_mini_task(spec):
    dom = load_domain(spec)
    for task in dom.tasks:
        env, user, replies, transcript = perfect_episode(dom, task)
        assert user.done or env.done, (task.task_id, transcript)
        assert env.evaluate(replies).reward == 1.0, (task.task_id, transcript)
        if user.done:
            assert STOP in transcript[-1][1] and "getting anywhere" not in transcript[-1][1], task.task_id


# ----------------------------------------------------------------------------- unit behaviour


def make_task(**profile) -> Task:
    base = {
        "user_id": "u1",
        "facts": {"user_id": "My user id is u1.", "reservation_id": "It is ABC123.",
                  "payment": "Please use my visa ending in 1111."},
        "confirm": True,
        "stages": [{"say": "Please cancel my trip.", "actions": [0], "writes": 1, "outputs": [], "refusal": False,
                    "transfer": False}],
        "patience": 3,
    }
    base.update(profile)
    return Task(task_id="t/0", user_id="u1", instruction="cancel", actions=[{"name": "cancel_reservation",
                                                                               "arguments": {}}], profile=base)


def test_protocol_and_answers():
    user = ScriptedUser()
    assert isinstance(user, UserSimulator)
    assert user.reset(make_task()) == "Please cancel my trip."
    assert user.step("Sure! Could you tell me your user id and the reservation number?") == \
        "My user id is u1. It is ABC123."
    assert "not sure" in user.step("What is your date of birth?")
    # a confirmation request is answered yes and counts as the stage's write
    assert user.step("I will cancel ABC123. Do you confirm (yes/no)?") == "Yes, please go ahead."
    assert not user.done
    # the report mentions a card, but the only question ("anything else?") asks for nothing: satisfied
    final = user.step("Done: the refund goes to your credit card. Is there anything else I can help with?")
    assert final.endswith(STOP) and user.done
    assert user.step("Hello?") == STOP


def test_declines_when_profile_says_so():
    user = ScriptedUser()
    user.reset(make_task(confirm=False))
    assert user.step("Shall I proceed with the cancellation?").startswith("No")


def test_id_question_with_the_word_confirm_is_a_question_not_a_confirmation():
    user = ScriptedUser()
    user.reset(make_task())
    assert user.step("Could you confirm your user id?") == "My user id is u1."
    assert user.confirmations == 0


def test_gives_up_when_stuck():
    user = ScriptedUser()
    user.reset(make_task())
    replies = [user.step("Let me look into that.") for _ in range(3)]
    assert replies[0] == "Okay." and "Please cancel my trip." in replies[1]
    assert replies[-1].endswith(STOP) and user.done


def test_refusal_and_outputs_satisfy_their_stages():
    stages = [
        {"say": "Cancel my basic economy trip.", "actions": [], "writes": 0, "outputs": [], "refusal": True,
         "transfer": False},
        {"say": "Then how much did I pay?", "actions": [], "writes": 0, "outputs": ["1286"], "refusal": False,
         "transfer": False},
    ]
    user = ScriptedUser()
    user.reset(make_task(stages=stages))
    # a question that contains "can't" is not a refusal; the refusal comes in a statement
    assert user.step("I can't see it yet, could you give me the reservation id?") == "It is ABC123."
    assert user.step("I'm sorry, basic economy reservations cannot be cancelled.") == "Then how much did I pay?"
    assert user.step("You paid a lot.") == "Okay."
    assert user.step("You paid $1,286 in total.").endswith(STOP)


def test_slot_detection_reads_questions_only():
    assert asked_slots("Your payment went through. What is your user id?") == ["user_id"]
    assert asked_slots("Please provide each passenger's date of birth.") == ["passengers"]
    assert asked_slots("Which date would you like to fly?") == ["flight"]
    assert asked_slots("The flight is booked.") == []
    assert is_confirmation_request("Would you like me to proceed? (yes/no)")
    assert not is_confirmation_request("I have proceeded with the change.")


def test_async_variants_and_determinism():
    dom = load_domain("airline-mini")
    task = dom.tasks[0]

    async def run():
        u = ScriptedUser()
        first = await u.areset(task)
        return first, await u.astep("May I have your user id?")

    assert asyncio.run(run()) == asyncio.run(run())
    assert asyncio.run(run())[1] == f"My user id is {task.user_id}."


def test_works_without_a_profile():
    task = Task(task_id="x/1", user_id="zed_1", instruction="I want to fly to Boston.")
    user = ScriptedUser()
    assert user.reset(task) == "I want to fly to Boston."
    assert user.step("What's your user id?") == "My user id is zed_1."


def test_a_form_with_several_questions_is_not_a_confirmation():
    user = ScriptedUser()
    user.reset(make_task())
    form = ("Could you please tell me: 1. Which reservation number? 2. How would you like to pay? "
            "Please confirm the payment method.")
    assert user.step(form) == "It is ABC123. Please use my visa ending in 1111."
    assert user.confirmations == 0
    assert user.step("Shall I proceed and charge your credit card?") == "Yes, please go ahead."
