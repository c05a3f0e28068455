"""The step walk shared by the engine's units that follow only the program's MLP steps
(`WeightLoader`, `OutputPath`): each keeps its own step pointer into the program, which
the engine reads for it (``desc = program[step]``)."""

from ..interface import StepKind

__all__ = ["walk_mlp_steps"]


def walk_mlp_steps(m, start, step, desc, mlp_state, on_step):
    """``IDLE`` and ``STEP`` states of an FSM: from ``start``, skip interaction steps, go
    to ``mlp_state`` on an MLP step (after the ``on_step`` assignments), back to ``IDLE``
    at the end of the program.

    Parameters
    ----------
    m : Module
        Inside the ``with m.FSM()`` block.
    start : Value
        One cycle: a run begins.
    step : Signal
        The unit's step pointer.
    desc : View of `rpaccel.interface.engine_layouts` ``desc``
        The program step at ``step``.
    mlp_state : str
    on_step : list of Assign
        Sync assignments made when a step is fetched.
    """
    with m.State("IDLE"):
        with m.If(start):
            m.d.sync += step.eq(0)
            m.next = "STEP"
    with m.State("STEP"):
        m.d.sync += on_step
        with m.Switch(desc.kind):
            with m.Case(StepKind.END):
                m.next = "IDLE"
            with m.Case(StepKind.MLP):
                m.next = mlp_state
            with m.Default():
                m.d.sync += step.eq(step + 1)
