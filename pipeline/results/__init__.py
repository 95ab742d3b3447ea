"""Results: bench result files read, checked, merged, compared and rendered; nothing here measures.

`format`: the schema of a result file and its rows, units and directions, how older versions read.
`files`: reading, checking (`report --check`), merging and writing result files.
`headline`: the few cells a run is judged by, named once.
`fingerprint`: the machine a file measured, the key a comparison puts a column per.
`compare`: your files beside the reference machines, with ratios, spread and the causes of gaps.
`markdown`: Markdown tables and number formats; `summary`: a run's end-of-run tables.
`tables`, `plots`, `page`: the wide tables, the plots and the performance page of `report`.
`startup`: the start-up result file of bench/open_scaling.py. `report`: the `report` command.
"""
