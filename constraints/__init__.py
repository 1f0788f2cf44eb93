"""Board constraints: one module per board, each defining ``BOARD``
(``onebit.flow.boards.Board``)."""
