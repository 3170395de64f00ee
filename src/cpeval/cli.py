"""Command-line interface: thin click commands over cpeval.pipeline, cpeval.report and cpeval.demo.

A user's mistake (bad file, bad value, bad definition or plan, unwritable output) prints one line
``cpeval: error: ...`` on stderr and exits with code 2, never a traceback. Click's own usage errors also exit 2.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import time
from pathlib import Path

import click

from cpeval import __version__
from cpeval.errors import CpevalError

EXIT_USER_ERROR = 2

_common_scoring_options = [
    click.option("--map", "map_path", type=click.Path(dir_okay=False), default=None,
                 help="Variable map YAML (SPSS names -> cpeval names, wide -> long)."),
    click.option("--instruments-dir", type=click.Path(file_okay=False), default=None,
                 help="Folder of your own instrument definitions (they replace shipped ones of the same id)."),
    click.option("--value-set", "value_sets", multiple=True, metavar="ID=FILE.csv",
                 help="Use a value set/tariff table for an instrument, e.g. eq5d5l=crosswalk.csv. Repeatable."),
    click.option("--encoding", default=None, help="Text encoding of a legacy .sav/.csv file (e.g. latin1)."),
]


def _with_options(options):
    def decorate(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn
    return decorate


def _echo_lines(lines):
    for line in lines:
        click.echo(line)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cpeval")
def cli():
    """cpeval: from a study's SPSS export to scored data and an HTML report.

    Start with `cpeval demo` to see the whole chain on a synthetic study.
    """


# ------------------------------------------------------------------------------------------------ instruments


@cli.group()
def instruments():
    """List and inspect instrument definitions."""


@instruments.command("list")
@click.option("--instruments-dir", type=click.Path(file_okay=False), default=None,
              help="Also load your own definitions from this folder.")
def instruments_list(instruments_dir):
    """Print every instrument cpeval can score, with its scales."""
    from cpeval.instruments import load_instruments

    registry = load_instruments(instruments_dir)
    for inst in registry.values():
        n_unverified = len(inst.unverified)
        flag = f"  ({n_unverified} unverified part{'s' if n_unverified != 1 else ''})" if n_unverified else ""
        click.echo(f"{inst.id:<10} {inst.name}{flag}")
        click.echo(f"{'':<10} items: {len(inst.items)}; scores: {', '.join(s.column for s in inst.scales)}")


@instruments.command("show")
@click.argument("instrument_id")
@click.option("--instruments-dir", type=click.Path(file_okay=False), default=None,
              help="Also load your own definitions from this folder.")
def instruments_show(instrument_id, instruments_dir):
    """Print one instrument's items, scales, value sets, sources and unverified parts."""
    from cpeval.instruments import load_instruments

    registry = load_instruments(instruments_dir)
    if instrument_id not in registry:
        raise CpevalError(f"unknown instrument '{instrument_id}'; expected one of {', '.join(registry)}")
    inst = registry[instrument_id]
    click.echo(f"{inst.name}  [{inst.id}, version {inst.version}]")
    click.echo(f"definition: {inst.path}")
    click.echo(f"source: {inst.source}")
    if inst.missing_codes:
        click.echo("missing codes: " + ", ".join(f"{c:g}" for c in inst.missing_codes))
    click.echo("items:")
    for item in inst.items:
        role = f" [{item.role}]" if item.role != "item" else ""
        derived = f" (or from {item.source_column})" if item.source_column else ""
        reverse = " reverse-scored" if item.reverse else ""
        click.echo(f"  {item.column:<22} {item.label}{role}; {item.response.describe()}{reverse}{derived}")
    click.echo("scales:")
    for s in inst.scales:
        inputs = (f"of {s.of}" if s.of else
                  f"of scales {', '.join(s.scales)}" if s.scales else f"{len(s.items)} items")
        policy = f", at most {s.max_missing} missing" if s.max_missing else ""
        rng = f", range {s.range[0]:g}-{s.range[1]:g}" if s.range else ""
        vs = f", value set {s.value_set or '(none shipped: --value-set required)'}" if s.rule == "value_set" else ""
        status = "verified" if s.verified else "UNVERIFIED"
        click.echo(f"  {s.column:<22} {s.rule} {inputs}{policy}{rng}{vs} [{status}]")
        click.echo(f"  {'':<22} {s.label}")
    for vs in inst.value_sets.values():
        click.echo(f"value set {vs.id}: {vs.name} ({'verified' if vs.verified else 'unverified'}); {vs.source}")
    click.echo("verification:")
    for v in inst.verification:
        click.echo(f"  [{v['status']}] {v['fact']}" + (f" — {v['source']}" if v.get("source") else ""))
    unverified = inst.unverified
    if unverified:
        click.echo("unverified (documented defaults; override with your own definition via --instruments-dir):")
        for fact in unverified:
            click.echo(f"  - {fact}")


# ------------------------------------------------------------------------------------------------------ score


@cli.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False))
@_with_options(_common_scoring_options)
@click.option("--instrument", "instrument_ids", multiple=True, metavar="ID",
              help="Score only this instrument (repeatable). Default: every instrument whose items are present.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Scored data: OUT.csv or OUT.sav (with variable and value labels).")
@click.option("--qa", "qa_path", type=click.Path(dir_okay=False), default=None,
              help="Write the QA list (every odd value and what was done) to this CSV.")
def score(input_path, map_path, instruments_dir, value_sets, encoding, instrument_ids, output, qa_path):
    """Score the questionnaires in INPUT (.sav or .csv) and write the scored data."""
    from cpeval.pipeline import run_scoring, summary_lines, write_qa, write_scored

    _check_output(output, (".csv", ".sav"))
    if qa_path:
        _check_output(qa_path, (".csv",))
    result = run_scoring(input_path, map_path=map_path, instruments_dir=instruments_dir,
                         instrument_ids=instrument_ids, value_set_specs=value_sets, encoding=encoding)
    write_scored(result, output)
    if qa_path:
        write_qa(result.qa, qa_path)
    _echo_lines(summary_lines(result))
    click.echo(f"wrote {output}" + (f" and {qa_path}" if qa_path else ""))


def _check_output(path, suffixes):
    """Fail before any work is done when an output name cannot be written."""
    p = Path(path)
    if p.suffix.lower() not in suffixes:
        raise CpevalError(f"{path}: output must end in {' or '.join(suffixes)}")
    if not p.parent.exists():
        raise CpevalError(f"{path}: folder {p.parent} does not exist")


# ----------------------------------------------------------------------------------------------------- report


@cli.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False))
@_with_options(_common_scoring_options)
@click.option("--plan", "plan_path", type=click.Path(dir_okay=False), default=None,
              help="Analysis plan YAML (study name, design columns). Default: cpeval's standard column names.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="The report: REPORT.html.")
@click.option("--scored", "scored_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the scored data (.csv or .sav).")
@click.option("--qa", "qa_path", type=click.Path(dir_okay=False), default=None, help="Also write the QA list (.csv).")
@click.option("--suppress-below", type=click.IntRange(0, None), default=0, show_default=True,
              help="Show counts below this number as '<N' (for reports circulated outside the study team).")
@click.option("--timestamp", default=None,
              help="Fixed 'generated' time for the report (same inputs + timestamp = same bytes).")
@click.option("--workers", "workers_path", type=click.Path(dir_okay=False), default=None,
              help="The workers' data with CPIFS-W: adds the fidelity sections.")
@click.option("--workers-map", "workers_map_path", type=click.Path(dir_okay=False), default=None,
              help="Variable map for the workers' file.")
@click.option("--fidelity-report", "fidelity_output", type=click.Path(dir_okay=False), default=None,
              help="Also write the fidelity report for trust R&D (one page per team, small counts suppressed).")
@click.option("--consensus", "consensus_path", type=click.Path(dir_okay=False), default=None,
              help="Researchers' ratings of the practice examples (long: worker_id, rater, domain, rating).")
def report(input_path, map_path, instruments_dir, value_sets, encoding, plan_path, output, scored_path, qa_path,
           suppress_below, timestamp, workers_path, workers_map_path, fidelity_output, consensus_path):
    """Import, score and report on INPUT in one go: SPSS export -> HTML report."""
    paths = _run_report(input_path, map_path=map_path, plan_path=plan_path, instruments_dir=instruments_dir,
                        value_sets=value_sets, encoding=encoding, output=output, scored_path=scored_path,
                        qa_path=qa_path, suppress_below=suppress_below, timestamp=timestamp,
                        workers_path=workers_path, workers_map_path=workers_map_path,
                        fidelity_output=fidelity_output, consensus_path=consensus_path)
    click.echo("wrote " + ", ".join(str(p) for p in paths))


def _run_report(input_path, *, map_path, plan_path, instruments_dir=None, value_sets=(), encoding=None, output,
                scored_path=None, qa_path=None, suppress_below=0, timestamp=None, echo=True, workers_path=None,
                workers_map_path=None, fidelity_output=None, consensus_path=None):
    from cpeval.pipeline import run_scoring, summary_lines, write_qa, write_scored
    from cpeval.plan import default_plan, load_plan
    from cpeval.report import build_study_context, render_study_report, write_report

    _check_output(output, (".html",))
    if scored_path:
        _check_output(scored_path, (".csv", ".sav"))
    if qa_path:
        _check_output(qa_path, (".csv",))
    if fidelity_output:
        _check_output(fidelity_output, (".html",))
        if not workers_path:
            raise CpevalError("--fidelity-report needs --workers: the workers' file with CPIFS-W")
    plan = load_plan(plan_path) if plan_path else default_plan(study=Path(input_path).stem)
    result = run_scoring(input_path, map_path=map_path, instruments_dir=instruments_dir,
                         value_set_specs=value_sets, encoding=encoding)
    _check_design_columns(result.data, plan)
    costs = None
    if plan.costs is not None:  # the plan has a costs section: service use, costs, cost-effectiveness
        from cpeval.qa import concat_qa

        costs = _run_costs(result.data, plan, source=result.imported.source, echo=echo)
        result = dataclasses.replace(result, qa=concat_qa(result.qa, costs.qa))
    # the report's QA summary covers import (user-missing codes), scoring and service-use records alike
    scoring = dataclasses.replace(result.scoring, qa=result.qa)
    context = build_study_context(scoring, plan.design, source_name=result.imported.source,
                                  import_log=result.imported.log + [f"warning: {n}" for n in result.notes],
                                  generated=timestamp, suppress_below=suppress_below)
    if plan.outcomes:  # the plan asks for arm comparisons: flow, baseline, results, reliability, methods
        from cpeval.compare import compare_arms
        from cpeval.report_compare import add_comparison_sections

        comparison = compare_arms(result.data, plan, result.instruments or None)
        add_comparison_sections(context, comparison, suppress_below=suppress_below,
                                participant_ids=result.data[plan.design.participant])
    if costs is not None:
        from cpeval.report_costs import add_cost_sections

        add_cost_sections(context, costs, suppress_below=suppress_below,
                          participant_ids=result.data[plan.design.participant])
    written = [output]
    if workers_path:  # fidelity: sections in the study report, and the R&D team pages when asked for
        from cpeval.fidelity import analyse_fidelity
        from cpeval.instruments import load_instruments
        from cpeval.report_fidelity import add_fidelity_sections, render_fidelity_report

        workers = run_scoring(workers_path, map_path=workers_map_path, instruments_dir=instruments_dir,
                              encoding=encoding)
        analysis = analyse_fidelity(result.data, workers.data, plan, load_instruments(instruments_dir),
                                    consensus=_read_consensus(consensus_path))
        add_fidelity_sections(context, analysis, suppress_below=suppress_below)
        if fidelity_output:
            # for circulation to teams: small counts suppressed (at least below 5) whatever the study report uses
            html = render_fidelity_report(analysis, study=plan.design.study, generated=timestamp,
                                          suppress_below=max(5, suppress_below))
            write_report(html, fidelity_output)
            written.append(fidelity_output)
    write_report(render_study_report(context), output)
    if scored_path:
        write_scored(result, scored_path)
        written.append(scored_path)
    if qa_path:
        write_qa(result.qa, qa_path)
        written.append(qa_path)
    if echo:
        _echo_lines(summary_lines(result))
    return written


def _check_design_columns(data, plan):
    design = plan.design
    needed = [design.participant, design.cluster, design.arm, design.timepoint] + ([design.site] if design.site else [])
    absent = [c for c in needed if c not in data.columns]
    if absent:
        raise CpevalError(
            f"{plan.source}: design column(s) {', '.join(absent)} not in the data; expected the columns named in the "
            f"plan (data has: {', '.join(list(data.columns)[:12])}{' ...' if len(data.columns) > 12 else ''})"
        )
    arms = set(data[design.arm].dropna().astype(str))
    unknown = sorted(arms - set(design.arms))
    if unknown:
        raise CpevalError(f"{plan.source}: column {design.arm} has value {unknown[0]!r}; expected "
                          f"{design.treatment!r} or {design.control!r} (arm in the plan)")


# ---------------------------------------------------------------------------------------------------- compare


@cli.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False))
@_with_options(_common_scoring_options)
@click.option("--plan", "plan_path", required=True, type=click.Path(dir_okay=False),
              help="Analysis plan YAML: design, outcomes, covariates, missing-data settings.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="RESULTS.json (flow, baseline tables, model results, reliability, methods) or RESULTS.csv "
                   "(model results only).")
def compare(input_path, map_path, instruments_dir, value_sets, encoding, plan_path, output):
    """Compare implementation and control teams on the plan's outcomes (mixed models, Satterthwaite df).

    INPUT may hold items (it is scored first) or scores.
    """
    from cpeval.compare import compare_arms, write_comparison
    from cpeval.pipeline import run_scoring
    from cpeval.plan import load_plan

    _check_output(output, (".json", ".csv"))
    plan = load_plan(plan_path)
    result = run_scoring(input_path, map_path=map_path, instruments_dir=instruments_dir,
                         value_set_specs=value_sets, encoding=encoding, require_items=False)
    _check_design_columns(result.data, plan)
    comparison = compare_arms(result.data, plan, result.instruments or None)
    write_comparison(comparison, output)
    for note in result.notes:
        click.echo(f"note: {note}")
    _echo_lines(_result_lines(comparison))
    click.echo(f"wrote {output}")


def _result_lines(comparison) -> list[str]:
    lines = []
    for r in comparison.records.itertuples():
        if r.estimate == r.estimate:  # not NaN
            lines.append(f"{r.outcome:<16} {r.model:<20} {r.estimate:9.3f} (95% CI {r.conf_low:.3f} to "
                         f"{r.conf_high:.3f}; df {r.df:.1f} {r.df_method}; p {r.p_value:.3f}) "
                         f"n {r.n_participants:.0f} in {r.n_clusters:.0f} teams")
        else:
            lines.append(f"{r.outcome:<16} {r.model:<20} not estimated: {r.notes}")
    return lines


# --------------------------------------------------------------------------------------------------- fidelity

_workers_options = [
    click.option("--workers", "workers_path", type=click.Path(dir_okay=False), default=None,
                 help="The workers' data (.sav/.csv, one row per worker) with CPIFS-W."),
    click.option("--workers-map", "workers_map_path", type=click.Path(dir_okay=False), default=None,
                 help="Variable map for the workers' file."),
    click.option("--consensus", "consensus_path", type=click.Path(dir_okay=False), default=None,
                 help="Researchers' ratings of the practice examples (.csv/.sav, long: worker_id, rater, domain, "
                      "rating)."),
]


@cli.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False))
@_with_options(_common_scoring_options)
@_with_options(_workers_options)
@click.option("--plan", "plan_path", required=True, type=click.Path(dir_okay=False),
              help="Analysis plan YAML with a fidelity section (bands, outcomes, measured_in_control).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="FIDELITY.json (every table) or FIDELITY.csv (team-by-domain table).")
def fidelity(input_path, map_path, instruments_dir, value_sets, encoding, workers_path, workers_map_path,
             consensus_path, plan_path, output):
    """Fidelity to the Connecting People model: CPIFS-W (workers) and CPIFS-SU (service users in INPUT)."""
    from cpeval.fidelity import write_fidelity
    from cpeval.plan import load_plan

    _check_output(output, (".json", ".csv"))
    if not workers_path:
        raise CpevalError("--workers is required: the workers' file with CPIFS-W (one row per worker)")
    plan = load_plan(plan_path)
    analysis = _run_fidelity(input_path, map_path, workers_path, workers_map_path, plan, instruments_dir,
                             value_sets, encoding, consensus_path)
    write_fidelity(analysis, output)
    for note in analysis.notes:
        click.echo(f"note: {note}")
    totals = analysis.teams[analysis.teams["domain"] == "total"]
    click.echo(f"fidelity scores: {len(analysis.scores)} raters in {totals['team'].nunique()} teams; "
               f"{len(analysis.unlinked)} service user(s) without a linked worker; "
               f"{int((analysis.qa['reason'] == 'domain_not_scored').sum())} domain score(s) not computed "
               "(too few items answered)")
    click.echo(f"wrote {output}")


def _read_consensus(path):
    from cpeval.io import read_data

    return read_data(path).data if path else None


def _run_fidelity(input_path, map_path, workers_path, workers_map_path, plan, instruments_dir=None, value_sets=(),
                  encoding=None, consensus_path=None):
    from cpeval.fidelity import analyse_fidelity
    from cpeval.instruments import load_instruments
    from cpeval.pipeline import run_scoring

    service_users = run_scoring(input_path, map_path=map_path, instruments_dir=instruments_dir,
                                value_set_specs=value_sets, encoding=encoding)
    _check_design_columns(service_users.data, plan)
    workers = run_scoring(workers_path, map_path=workers_map_path, instruments_dir=instruments_dir,
                          encoding=encoding)
    return analyse_fidelity(service_users.data, workers.data, plan, load_instruments(instruments_dir),
                            consensus=_read_consensus(consensus_path))


# ------------------------------------------------------------------------------------------------------ costs


@cli.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False))
@_with_options(_common_scoring_options)
@click.option("--plan", "plan_path", required=True, type=click.Path(dir_okay=False),
              help="Analysis plan YAML with a costs section (unit costs, services, implementation costs, bootstrap).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="COSTS.json (every table: service use, costs, results, CEAC, methods) or COSTS.csv (results).")
@click.option("--participant-costs", "participant_costs_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the costs per participant and period (.csv or .sav): by category, in total, and "
                   "the implementation cost.")
@click.option("--qa", "qa_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the QA list of the import and the service-use records (.csv).")
def costs(input_path, map_path, instruments_dir, value_sets, encoding, plan_path, output, participant_costs_path,
          qa_path):
    """Costs and cost-effectiveness: service use (CSRI) x unit costs, implementation costs, QALYs, two-stage
    cluster bootstrap, CE plane, acceptability curve and net benefit (docs/costs.md).

    INPUT may hold items (it is scored first: EQ-5D utilities, the primary outcome) or scores.
    """
    from cpeval.costs import write_costs
    from cpeval.pipeline import run_scoring, write_qa
    from cpeval.plan import load_plan

    _check_output(output, (".json", ".csv"))
    if participant_costs_path:
        _check_output(participant_costs_path, (".csv", ".sav"))
    if qa_path:
        _check_output(qa_path, (".csv",))
    plan = load_plan(plan_path)
    if plan.costs is None:
        raise CpevalError(f"{plan_path}: no costs section; expected costs: {{unit_costs: ..., price_year: ..., "
                          "services: ...} (docs/costs.md)")
    result = run_scoring(input_path, map_path=map_path, instruments_dir=instruments_dir,
                         value_set_specs=value_sets, encoding=encoding, require_items=False)
    _check_design_columns(result.data, plan)
    analysis = _run_costs(result.data, plan, source=result.imported.source)
    write_costs(analysis, output)
    written = [output]
    if participant_costs_path:
        _write_participant_costs(analysis, participant_costs_path)
        written.append(participant_costs_path)
    if qa_path:
        from cpeval.qa import concat_qa

        write_qa(concat_qa(result.qa, analysis.qa), qa_path)
        written.append(qa_path)
    for note in result.notes + analysis.notes:
        click.echo(f"note: {note}")
    _echo_lines(_cost_lines(analysis))
    click.echo("wrote " + ", ".join(str(p) for p in written))


def _run_costs(data, plan, *, source, echo=True):
    """analyse_costs with a progress bar on the terminal (click shows it only when stderr is a terminal)."""
    from cpeval.costs import analyse_costs, bootstrap_total

    total = bootstrap_total(plan)
    with click.progressbar(length=total, label="bootstrap replicates", file=sys.stderr,
                           hidden=not (echo and sys.stderr.isatty())) as bar:
        return analyse_costs(data, plan, source=source, progress=bar.update)


def _write_participant_costs(analysis, path):
    from cpeval.costs import participant_costs_table

    table = participant_costs_table(analysis)
    if str(path).lower().endswith(".sav"):
        from cpeval.io import write_data

        year = analysis.settings.price_year
        labels = {c: (f"Cost of {c[5:].replace('_', ' ')} in the recall period (GBP, {year} prices)"
                      if c.startswith("cost_") else c.replace("_", " ")) for c in table.columns}
        labels.update(service_cost=f"Cost of all services in the recall period (GBP, {year} prices)",
                      implementation_cost=f"Implementation cost per participant (GBP, {year} prices; follow-up)")
        write_data(table, path, variable_labels=labels)
    else:
        table.to_csv(path, index=False)


def _cost_lines(analysis) -> list[str]:
    d = analysis.plan.design
    lines = [f"costs at {analysis.settings.price_year} prices; {d.treatment} (comparator) minus {d.control} "
             f"(reference); {analysis.settings.replicates} two-stage cluster bootstrap replicates"]
    formats = {"£": lambda v: f"{'-' if v < 0 else ''}£{abs(v):,.0f}", "QALYs": "{:.3f}".format,
               "points": "{:.2f}".format}
    level = f"{100 * analysis.settings.conf_level:g}% CI"
    for r in analysis.results.itertuples():
        if r.conf_low == r.conf_low:  # not NaN: an estimate with an interval
            fmt = formats.get(r.unit, "{:.3f}".format)
            lines.append(f"{r.analysis:<19} {r.quantity}: {fmt(r.estimate)} ({level} {fmt(r.conf_low)} to "
                         f"{fmt(r.conf_high)})")
        else:
            lines.append(f"{r.analysis:<19} {r.quantity}: {r.notes}")
    ceac = analysis.ceac.set_index("threshold")["probability_cost_effective"]
    for lam in analysis.settings.inb_thresholds:
        lines.append(f"probability cost-effective at £{lam:,.0f} per QALY: {ceac.get(lam, float('nan')):.2f}")
    return lines


# ------------------------------------------------------------------------------------------------------- demo


@cli.command()
@click.option("-o", "--output-dir", type=click.Path(file_okay=False), default=None,
              help="Folder for the demo files (default: a new folder cpeval-demo[-N] in the current one).")
@click.option("--seed", type=int, default=2024, show_default=True, help="Random seed: same seed, same study.")
@click.option("--timestamp", default=None, help="Fixed 'generated' time for the report.")
def demo(output_dir, seed, timestamp):
    """Generate a synthetic Connecting People study and run the whole chain on it.

    Writes the study's SPSS files, its variable maps and plan, the implementation and unit costs, the scored data,
    the QA list, report.html (with the costs section) and fidelity_report.html (the trust R&D version: one page per
    team).
    """
    from cpeval.demo import generate_demo_study, write_demo_files
    from cpeval.pipeline import run_scoring, write_scored
    from cpeval.resources import analysis_dir

    started = time.perf_counter()
    folder = Path(output_dir) if output_dir else _new_folder(Path.cwd(), "cpeval-demo")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CpevalError(f"{folder}: cannot create the demo folder ({exc.strerror})") from None
    study = generate_demo_study(seed=seed)
    files = write_demo_files(study, folder)
    # the maps, the plan and the cost tables it names, so the folder holds everything the analysis used
    for name in ("demo_study_map.yaml", "demo_workers_map.yaml", "demo_plan.yaml", "unit_costs_pssru_example.csv",
                 "demo_price_index.csv"):
        shutil.copyfile(analysis_dir() / name, folder / name)
    participants = Path(files["participants"])
    written = _run_report(participants, map_path=folder / "demo_study_map.yaml", plan_path=folder / "demo_plan.yaml",
                          output=folder / "report.html", scored_path=folder / "demo_study_scored.sav",
                          qa_path=folder / "demo_study_qa.csv", timestamp=timestamp,
                          workers_path=files["workers"], workers_map_path=folder / "demo_workers_map.yaml",
                          fidelity_output=folder / "fidelity_report.html", consensus_path=files["consensus"])
    workers = run_scoring(files["workers"], map_path=folder / "demo_workers_map.yaml")
    write_scored(workers, folder / "demo_workers_scored.sav")
    click.echo(f"workers: {len(workers.data)} scored on {', '.join(i.id for i in workers.instruments)}")
    click.echo(f"demo study (seed {seed}) in {folder}/ in {time.perf_counter() - started:.1f} s:")
    for path in [participants, files["workers"], files["consensus"], files["implementation_costs"], *written,
                 folder / "demo_workers_scored.sav"]:
        click.echo(f"  {Path(path).name}")
    click.echo("the same report from the SPSS file, as a study team would run it:")
    click.echo(f"  cpeval report {participants} --map {folder / 'demo_study_map.yaml'} "
               f"--plan {folder / 'demo_plan.yaml'} --workers {files['workers']} "
               f"--workers-map {folder / 'demo_workers_map.yaml'} --consensus {files['consensus']} "
               f"--fidelity-report {folder / 'fidelity_report.html'} "
               f"-o {folder / 'report.html'}")
    click.echo("the costs analysis alone, as JSON:")
    click.echo(f"  cpeval costs {participants} --map {folder / 'demo_study_map.yaml'} "
               f"--plan {folder / 'demo_plan.yaml'} -o {folder / 'costs.json'}")


def _new_folder(parent: Path, stem: str) -> Path:
    candidate, n = parent / stem, 1
    while candidate.exists():
        n += 1
        candidate = parent / f"{stem}-{n}"
    return candidate


# ------------------------------------------------------------------------------------------------ entry point


def main(argv=None) -> None:
    """Entry point: user errors exit 2 with one line, no traceback."""
    try:
        cli.main(args=argv, prog_name="cpeval", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("cpeval: aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:  # usage errors: wrong option, missing argument
        exc.show()
        sys.exit(EXIT_USER_ERROR)
    except CpevalError as exc:
        click.echo(f"cpeval: error: {exc}", err=True)
        sys.exit(EXIT_USER_ERROR)
    except PermissionError as exc:
        click.echo(f"cpeval: error: {exc.filename}: permission denied", err=True)
        sys.exit(EXIT_USER_ERROR)
    except IsADirectoryError as exc:
        click.echo(f"cpeval: error: {exc.filename}: is a folder; expected a file", err=True)
        sys.exit(EXIT_USER_ERROR)


if __name__ == "__main__":
    main()
