# geohpc: run geospatial ML pipelines on SLURM supercomputers. `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
MAKEFLAGS += --no-builtin-rules --no-print-directory
.DEFAULT_GOAL := help

SITE ?= local
VALID_SITES := $(sort $(filter-out %.local,$(basename $(notdir $(wildcard sites/*.env)))))
VALID_PIPELINES := $(sort $(basename $(notdir $(wildcard pipelines/*.toml))))
VALID_STAGES := $(sort $(filter-out _%,$(basename $(notdir $(wildcard py/geohpc/plans/*.py)))))
PY_RUN := sh/run.sh

# one word, and one of the valid names: anything else (shell characters included) stops make at once
valid = $(and $(filter 1,$(words $(1))),$(filter $(1),$(2)))
guard_site = $(if $(call valid,$(SITE),$(VALID_SITES)),,$(error unknown SITE '$(SITE)': valid sites are $(VALID_SITES)))
guard_stage = $(if $(call valid,$(STAGE),$(VALID_STAGES)),,$(error unknown STAGE '$(STAGE)': valid stages are $(VALID_STAGES)))
guard_stage_opt = $(if $(STAGE),$(guard_stage))
# PIPELINE=<name in pipelines/> or a path to a .toml file
guard_pipeline = $(if $(or $(call valid,$(PIPELINE),$(VALID_PIPELINES)),$(and $(filter 1,$(words $(PIPELINE))),$(filter %.toml,$(PIPELINE)),$(wildcard $(PIPELINE)))),,$(error unknown PIPELINE '$(PIPELINE)': valid pipelines are $(VALID_PIPELINES) (or PIPELINE=path/to/file.toml)))
guard_file = $(if $(and $(FILE),$(wildcard $(FILE))),,$(error FILE='$(FILE)' does not exist here: give FILE=path/to/model.pt (a file or a folder)))
dry_run = $(if $(filter-out 0,$(DRY_RUN)),--dry-run)

.PHONY: help setup test lint demo slurm-up slurm-down sshd-up sshd-down deploy submit status logs throttle cancel \
	resubmit run preflight purge-guard rescue bench s3-up s3-down site-setup image push fetch

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^##@/ {printf "\n%s\n", substr($$0, 5)} /^[a-z-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

##@ Getting started
setup: ## create .venv and install geohpc with its test extras (and the viewer's JS)
	@sh/setup.sh

demo: ## the main job on the local site: make run PIPELINE=demo SITE=local, wait, print where its report is [DEMO=full|sure2]
	@if [ "$(DEMO)" = sure2 ]; then sh/run.sh demo-sure2; else sh/demo.sh; fi

test: ## install what the tests need (venv, apt packages, Slurm, sshd) and run them
	@sh/test.sh

lint: ## shellcheck sh/ and jobs/, ruff py/ and tests/
	@sh/lint.sh

##@ Working on a site (SITE=local|lumi|saga|betzy)
deploy: ## rsync the repo to the site's REMOTE:REMOTE_DIR [DRY_RUN=1] (never touches data/ outputs/ logs/ runs/)
	$(guard_site)@$(PY_RUN) deploy --site "$(SITE)" $(dry_run)

site-setup: ## make the site's folders, LINKS, venv and a NEW deps folder v<N+1> (current flips; old kept) [DRY_RUN=1]
	$(guard_site)@$(PY_RUN) site-setup --site "$(SITE)" $(dry_run)

image: ## build the site's CPU_SIF from IMAGE_SOURCE (docker archive or .def), on the site [DRY_RUN=1]
	$(guard_site)@$(PY_RUN) image --site "$(SITE)" $(dry_run)

push: ## rsync a model or checkpoint to the site's MODELS_DIR: FILE=path (an old different copy is kept) [DRY_RUN=1]
	$(guard_site)$(guard_file)@$(PY_RUN) push --site "$(SITE)" $(dry_run)

fetch: ## rsync a stage's results into fetched/SITE/STAGE: STAGE=x [ONLY=reports|'*.tif,*.json' OUT_DIR=] [DRY_RUN=1]
	$(guard_site)$(guard_stage)@$(PY_RUN) fetch --site "$(SITE)" --stage "$(STAGE)" $(dry_run)

preflight: ## run the checks in checks/ for a site [STAGE=x] [ARGS='--json' or '--only quota']
	$(guard_site)$(guard_stage_opt)@$(PY_RUN) preflight --site "$(SITE)" $(if $(STAGE),--stage "$(STAGE)") $(ARGS)

submit: ## submit STAGE=x on SITE [THROTTLE=N ITEMS=file AFTER=jobid|stage MEM= TIME= DRY_RUN=1 FORCE=1]
	$(guard_site)$(guard_stage)@$(PY_RUN) submit --site "$(SITE)" --stage "$(STAGE)"

run: ## a whole pipeline: PIPELINE=x SITE=y [DRY_RUN=1] [its vars, e.g. INPUT_DIR=] (returns at once; planner jobs do the rest)
	$(guard_site)$(guard_pipeline)@$(PY_RUN) run --pipeline "$(PIPELINE)" --site "$(SITE)"

status: ## items by state per run [STAGE=x] [ALL=1]; a pipeline run's steps, retries, efficiency, cost: PIPELINE=x [RUN=ts]
	$(guard_stage_opt)@$(PY_RUN) $(if $(PIPELINE),pipeline-status,status $(if $(STAGE),--stage "$(STAGE)") $(if $(ALL),--all))

logs: ## the failed items' log tails and paths: STAGE=x [ITEM=name] [RUN=ts] [TAIL=20]
	$(guard_stage)@$(PY_RUN) logs --stage "$(STAGE)"

throttle: ## change how many tasks of an array run at once: JOB=id N=k
	@$(PY_RUN) jobctl throttle --job "$(JOB)" --n "$(N)"

cancel: ## cancel JOB=id, or the latest run of STAGE=x, or of PIPELINE=x [RUN=ts] (planners too), or every latest run
	$(if $(PIPELINE),$(guard_pipeline)@$(PY_RUN) run --cancel --pipeline "$(PIPELINE)" --run "$(RUN)",$(guard_stage_opt)@$(PY_RUN) jobctl cancel --job "$(JOB)" --stage "$(STAGE)")

resubmit: ## send again only the failed or missing items of a run: STAGE=x [RUN=timestamp] [THROTTLE=N]
	$(guard_stage)@$(PY_RUN) jobctl resubmit --stage "$(STAGE)" --run "$(RUN)"

purge-guard: ## list files at risk of the site's purge, by folder, with bytes and days left
	$(guard_site)@$(PY_RUN) purge_guard --site "$(SITE)" list

rescue: ## copy at-risk files to RESCUE_DIR (never under PROJECT_SPACE) with rsync and verify; none safe: make fetch
	$(guard_site)@$(PY_RUN) purge_guard --site "$(SITE)" rescue

##@ Local test bed
slurm-up: ## install and start a one-node Slurm cluster on localhost (root; idempotent)
	@sh/slurm.sh up

slurm-down: ## stop the local Slurm cluster's daemons
	@sh/slurm.sh down

sshd-up: ## start the loopback sshd used by the deploy tests
	@sh/sshd_test.sh up

sshd-down: ## stop the loopback sshd
	@sh/sshd_test.sh down

s3-up: ## start a local S3 server (moto) on 127.0.0.1:9000: the demo's download then reads s3://
	@sh/s3.sh up

s3-down: ## stop the local S3 server
	@sh/s3.sh down

##@ Benchmarks
bench: ## run a benchmark side by side with its peer tool: BENCH=cog|tiles|sample|infer|train
	@sh/bench.sh "$(BENCH)"
