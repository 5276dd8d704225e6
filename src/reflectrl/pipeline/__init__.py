"""The end-to-end pipeline: teacher data -> SFT -> RL -> evaluation -> report.

* `plan`: what a run is (its stages in order, the comparison's rows, the run folder's names);
* `presets`: its settings, with each built-in environment's changes in a module of their own;
* `stage_functions`: the work of each stage; `stages`: running stages resumably in their folders;
* `run`: `run_pipeline`, the plan stage by stage; `stage_processes`: a run's independent stages side by side
  in local processes; `seeds`: one run per training seed;
* `report`: what a run's report says and draws; `aggregate`: the report over training seeds;
  `console`: the stages' console lines and the run's log file.
"""
