#!/usr/bin/env bash
# Issue 7's experiment: online RL from SFT on DangerousTaxi with the embedded SmolLM2-135M, without
# reflection and with an SFT reflector (Reflect-RL); training and evaluation at the paper's reported
# level, drop-off. Run from the repository root after `bash scripts/setup.sh`. These are the commands
# that produced the committed numbers, with the run folders renamed (see README.md).
set -euo pipefail
export PATH="$PWD/.venv/bin:$PATH"
R=runs/taxi_rl

# 1. Teacher data (oracle teacher, 200 episodes of the full task, 2 negatives each, fixed labels): 13 s.
reflectrl gen-data taxi --teacher oracle --episodes 200 --random-prob 0.1 --negatives 2 --fixed-labels --out $R/data

# 2. SFT warm-ups: LoRA r16 on every block, lr 1e-3 cosine, batch 8; --max-minutes bounds each run.
SFT="--threads 1 --lora-r 16 --lora-alpha 32 --learning-rate 1e-3 --lr-scheduler cosine --warmup-ratio 0.03 --batch-size 8 --eval-steps 40 --save-steps 40"
reflectrl sft --role plain     --data $R/data/plain.jsonl     --out $R/sft_plain     $SFT --max-steps 160 --max-minutes 18 --max-eval-rows 100
reflectrl sft --role policy    --data $R/data/policy.jsonl    --out $R/sft_policy    $SFT --max-steps 160 --max-minutes 24 --max-eval-rows 100
reflectrl sft --role reflector --data $R/data/reflector.jsonl --out $R/sft_reflector $SFT --max-steps 120 --max-minutes 22 --max-eval-rows 48

# 3. Online RL from the SFT policies: GRPO (4 episodes per start seed), 16 episodes per iteration, level drop-off.
RL="--algo grpo --group-size 4 --episodes-per-iter 16 --epochs 1 --minibatch-size 32 --lr 2e-4 --levels dropoff --horizon 12 --iters 12 --eval-every 4 --eval-episodes 16 --checkpoint-every 2 --threads 1 --quiet"
reflectrl train taxi --policy $R/sft_plain --no-reflection $RL --out $R/rl_plain
reflectrl train taxi --policy $R/sft_policy --reflector $R/sft_reflector --reflection-tokens 96 $RL --out $R/rl_reflect

# 4. Held-out evaluation: the first 100 seeds of the test split, level drop-off, horizon 12, greedy.
EVAL="taxi --split test --level dropoff --horizon 12 --episodes 100 --batch-size 50 --threads 1 --quiet"
reflectrl eval $EVAL --agent plain --policy $R/sft_plain --out $R/eval_sft_plain
reflectrl eval $EVAL --agent plain --policy $R/rl_plain/final --out $R/eval_rl_plain
reflectrl eval $EVAL --agent reflect --policy $R/sft_policy --reflector $R/sft_reflector --reflection-tokens 96 --out $R/eval_sft_reflect
reflectrl eval $EVAL --agent reflect --policy $R/rl_reflect/final --reflector $R/sft_reflector --reflection-tokens 96 --out $R/eval_rl_reflect

# 4b. Session 4: the policy trained on the SFT reflector's own reflections (first 84 teacher episodes, 986 rows),
#     then Reflect-RL from it (8 iterations) and the two held-out evaluations.
reflectrl reflect-data --data $R/data --reflector $R/sft_reflector --out $R/student_data --reflection-tokens 96 --max-episodes 84 --threads 1
reflectrl sft --role policy --data $R/student_data/policy.jsonl --out $R/sft_policy_student ${SFT/--save-steps 40/--save-steps 20} --max-steps 100 --max-minutes 26 --max-eval-rows 100
reflectrl train taxi --policy $R/sft_policy_student --reflector $R/sft_reflector --reflection-tokens 96 ${RL/--iters 12/--iters 8} --out $R/rl_reflect_student
reflectrl eval $EVAL --agent reflect --policy $R/sft_policy_student --reflector $R/sft_reflector --reflection-tokens 96 --out $R/eval_sft_reflect_student
reflectrl eval $EVAL --agent reflect --policy $R/rl_reflect_student/final --reflector $R/sft_reflector --reflection-tokens 96 --out $R/eval_rl_reflect_student

# 4c. Session 5: a stronger reflector (same rows and settings, longer: stopped after 241 of 320 steps), how often
#     each reflector recommends the oracle's move on held-out drop-off states, the held-out evaluation of the
#     reflective SFT policy with it, and Reflect-RL from there (three variants, see README.md).
reflectrl sft --role reflector --data $R/data/reflector.jsonl --out $R/sft_reflector_strong ${SFT/--eval-steps 40 --save-steps 40/--eval-steps 80 --save-steps 20} --max-steps 320 --max-eval-rows 48
#     (killed after the step-240 checkpoint, then finished with the same command plus --resume --max-minutes 0.05)
reflectrl gen-data taxi --teacher oracle --episodes 24 --random-prob 0.1 --negatives 0 --fixed-labels --split validation --level dropoff --horizon 12 --out $R/probe_data
for r in sft_reflector sft_reflector_strong; do
    reflectrl reflect-data --data $R/probe_data --reflector $R/$r --out $R/probe_$r --reflection-tokens 96 --threads 1
    python experiments/taxi_rl/reflector_probe.py $R/probe_$r/policy.jsonl
done
reflectrl eval $EVAL --agent reflect --policy $R/sft_policy --reflector $R/sft_reflector_strong --reflection-tokens 96 --out $R/eval_sft_reflect_strong
reflectrl train taxi --policy $R/sft_policy --reflector $R/sft_reflector_strong --reflection-tokens 96 $RL --out $R/rl_reflect_strong   # stopped after 4 iterations
reflectrl train taxi --policy $R/sft_policy --reflector $R/sft_reflector_strong --reflection-tokens 96 $RL --no-grpo-std-norm --out $R/rl_reflect_strong_nostd
reflectrl train taxi --policy $R/sft_policy --reflector $R/sft_reflector_strong --reflection-tokens 96 ${RL/--lr 2e-4/--lr 5e-5} --kl-coef 0.05 --out $R/rl_reflect_strong_lowlr

# 4d. Session 6: the session-5 GRPO run's iteration-4 adapter on the test seeds; a no-learning control (lr 1e-12,
#     stopped after 3 iterations); Reflect-RL with discounting, with and without step-level groups, 8 iterations each
#     (the runs were started with --iters 12, their iteration-8 checkpoints were evaluated, and they were stopped after
#     iterations 10 and 9, which their metrics files include); which moves obey the reflection.
reflectrl eval $EVAL --agent reflect --policy $R/rl_reflect_strong/checkpoints/iter-000004/policy --reflector $R/sft_reflector_strong --reflection-tokens 96 --out $R/eval_rl_reflect_strong_iter4
reflectrl train taxi --policy $R/sft_policy --reflector $R/sft_reflector_strong --reflection-tokens 96 ${RL/--lr 2e-4/--lr 1e-12} --out $R/rl_reflect_strong_control   # stopped after 3 iterations
reflectrl train taxi --policy $R/sft_policy --reflector $R/sft_reflector_strong --reflection-tokens 96 ${RL/--iters 12/--iters 8} --gamma 0.9 --out $R/rl_reflect_strong_g09
reflectrl train taxi --policy $R/sft_policy --reflector $R/sft_reflector_strong --reflection-tokens 96 ${RL/--iters 12/--iters 8} --gamma 0.9 --step-groups --out $R/rl_reflect_strong_g09_steps
for run in rl_reflect_strong_g09 rl_reflect_strong_g09_steps; do
    reflectrl eval $EVAL --agent reflect --policy $R/$run/final --reflector $R/sft_reflector_strong --reflection-tokens 96 --out $R/eval_${run}_iter8
done
python experiments/taxi_rl/reflection_follow.py "SFT, 89-step reflector=$R/eval_sft_reflect" "Reflect-RL 12 it., 89-step=$R/eval_rl_reflect" \
    "SFT, 241-step reflector=$R/eval_sft_reflect_strong" "GRPO 4 it., 241-step=$R/eval_rl_reflect_strong_iter4" \
    "GRPO gamma 0.9, 8 it.=$R/eval_rl_reflect_strong_g09_iter8" "GRPO gamma 0.9 + step groups, 8 it.=$R/eval_rl_reflect_strong_g09_steps_iter8"

# 4e. Session 7: the reflective policy trained with 17% misleading rows (the same teacher rows plus, for 17% of the
#     states, a reflection the teacher wrote for a wrong move, labelled with the oracle's move); its test evaluation;
#     Reflect-RL from it with gamma 0.9 and step groups (8 iterations; the iteration-4 checkpoint was copied out
#     before it was pruned); step 2's policy SFT run again (same rows, same command) to see what more SFT steps do;
#     a KL-anchored run from sft_policy (stopped after 6 iterations, not tested).
reflectrl gen-data taxi --teacher oracle --episodes 200 --random-prob 0.1 --negatives 2 --fixed-labels --misleading 0.17 --out $R/data_misleading
reflectrl sft --role policy --data $R/data_misleading/policy.jsonl --out $R/sft_policy_misleading $SFT --max-steps 160 --max-minutes 24 --max-eval-rows 100
reflectrl sft --role policy --data $R/data/policy.jsonl --out $R/sft_policy_rerun $SFT --max-steps 160 --max-minutes 24 --max-eval-rows 100
reflectrl train taxi --policy $R/sft_policy_misleading --reflector $R/sft_reflector_strong --reflection-tokens 96 ${RL/--iters 12/--iters 8} --gamma 0.9 --step-groups --out $R/rl_reflect_misleading
reflectrl train taxi --policy $R/sft_policy --reflector $R/sft_reflector_strong --reflection-tokens 96 ${RL/--iters 12/--iters 8} --gamma 0.9 --step-groups --kl-coef 0.3 --out $R/rl_reflect_strong_g09_steps_kl   # stopped after 6 iterations
for p in sft_policy_misleading sft_policy_rerun; do
    reflectrl eval $EVAL --agent reflect --policy $R/$p --reflector $R/sft_reflector_strong --reflection-tokens 96 --out $R/eval_${p/sft_policy/sft_reflect_strong}
done
reflectrl eval $EVAL --agent reflect --policy $R/rl_reflect_misleading/checkpoints/iter-000004/policy --reflector $R/sft_reflector_strong --reflection-tokens 96 --out $R/eval_rl_reflect_misleading_iter4
reflectrl eval $EVAL --agent reflect --policy $R/rl_reflect_misleading/final --reflector $R/sft_reflector_strong --reflection-tokens 96 --out $R/eval_rl_reflect_misleading_iter8
python experiments/taxi_rl/reflection_follow.py "SFT, 241-step reflector=$R/eval_sft_reflect_strong" "SFT again, 134 steps=$R/eval_sft_reflect_strong_rerun" \
    "SFT with misleading rows=$R/eval_sft_reflect_strong_misleading" "Reflect-RL from it, 4 it.=$R/eval_rl_reflect_misleading_iter4" \
    "Reflect-RL from it, 8 it.=$R/eval_rl_reflect_misleading_iter8"
python experiments/taxi_rl/paired_compare.py $R/eval_sft_reflect_strong_misleading $R/eval_rl_reflect_misleading_iter8
python experiments/taxi_rl/paired_compare.py $R/eval_sft_plain $R/eval_rl_plain

# 5. Learning curves (training success per iteration, validation dashed).
reflectrl plot "RL without reflection=$R/rl_plain" "Reflect-RL=$R/rl_reflect" \
    "Reflect-RL, policy SFT on the reflector's reflections=$R/rl_reflect_student" --out experiments/taxi_rl/learning_curves.png \
    --title "DangerousTaxi drop-off, SmolLM2-135M: success per RL iteration"
reflectrl plot "no update (lr 1e-12)=$R/rl_reflect_strong_control" "GRPO=$R/rl_reflect_strong" "GRPO, gamma 0.9=$R/rl_reflect_strong_g09" \
    "GRPO, gamma 0.9, step groups=$R/rl_reflect_strong_g09_steps" --out experiments/taxi_rl/learning_curves_strong_reflector.png \
    --title "Reflect-RL from the 241-step reflector: success per RL iteration"
reflectrl plot "no update (lr 1e-12)=$R/rl_reflect_strong_control" "GRPO=$R/rl_reflect_strong" "GRPO, gamma 0.9=$R/rl_reflect_strong_g09" \
    "GRPO, gamma 0.9, step groups=$R/rl_reflect_strong_g09_steps" --metric loss/entropy --out experiments/taxi_rl/entropy_strong_reflector.png \
    --title "Reflect-RL from the 241-step reflector: policy entropy (nats) during each update"
reflectrl plot "from sft_policy (session 6)=$R/rl_reflect_strong_g09_steps" "from sft_policy, KL 0.3 to it=$R/rl_reflect_strong_g09_steps_kl" \
    "from the SFT policy with misleading rows=$R/rl_reflect_misleading" --out experiments/taxi_rl/learning_curves_misleading.png \
    --title "Reflect-RL, GRPO gamma 0.9 + step groups: success per RL iteration"
