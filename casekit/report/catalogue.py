"""The report's prose: every sentence and label the report prints that is not in a template.

Python formats the numbers; the words around them are here, in one place, as ``str.format``
templates whose fields name what goes in (each field receives a string already formatted).
The fixed paragraphs of each section live in its template (templates/partials/); this module
holds the sentences that depend on the run (limitations, notes, labels of measures), so that a
reviewer can read all of the report's words in the templates and this file.

The texts of ``findings.definitions`` are not here: analysis writes them into findings.json.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- cover

COMPLETE = "complete: {recorded} of {planned} planned attempts recorded"
INCOMPLETE = "INCOMPLETE: {recorded} of {planned} planned attempts recorded"
PLUS_IMPORTED = "; plus {imported} imported (captured outside casekit)"
NOT_FINISHED = "not finished"
CONTROL_OVERRIDE = (
    "NO CONTROL WORK. This case set allow_no_control: true, overriding casekit's requirement "
    "of a control work (a text the model cannot have seen). No rate of chance reproduction "
    "of an unseen text was measured for any figure in this report: spans of a few words occur "
    "by chance between unrelated texts, and nothing in this run shows how often the matcher "
    "reports a span of the reported lengths by chance. Read every figure without a control floor."
)

# --------------------------------------------------------------------------- rates, controls

NO_ATTEMPTS_ESTIMATE = "no attempts: no estimate"
RATE_CI = "95% CI {lo}\u2013{hi}, {method}"
INTERVAL_METHODS = {"wilson": "Wilson", "clopper-pearson": "exact Clopper-Pearson"}
FLOOR_NONE = ("No control generation attempts for {model_id}: chance reproduction of an unseen "
              "text was not measured for this model.")
FLOOR = ("{k_of_n} control attempts reached the reporting threshold; one-sided 95% upper bound "
         "of the rate of chance reproduction of an unseen text {upper_95}.")
FLOOR_AT = ("counted at this work's reporting threshold, {min_span} {unit}, as in the test "
            "against the control; at the controls' own threshold ({own}) the floor is "
            "{floor}")
DATE_UNKNOWN = "date not stated"
CONTROL_UNPUBLISHED = ("{model_id}: unpublished (the case states it was never published; "
                       "written {written}), so not in any training data")
CONTROL_AFTER_CUTOFF = ("{model_id}: published {published}, after the model's stated training "
                        "cutoff {cutoff}")
CONTROL_BEFORE_CUTOFF = (
    "{model_id}: published {published}, BEFORE the model's stated training cutoff {cutoff}: "
    "the model may have seen it, and its rate may overstate chance reproduction.")
CONTROL_NO_CUTOFF = (
    "{model_id}: published {published}, but the case states no training cutoff for this model "
    "(models[].training_cutoff) and does not mark the control unpublished: that the model "
    "cannot have seen it is asserted, not shown.")
CONTROL_NO_DATE = (
    "{model_id}: the control's publication date is not stated (works[].published): that the "
    "model cannot have seen it is asserted, not shown.")
CONTROL_SHORT = (
    "Size: the control has {words} counted words, less than {ratio} of {subjects}. Attempt "
    "rates are per attempt, so a short control is comparable in kind, but it yields fewer "
    "attempts (a wider interval) and offers fewer passages to match by chance.")

# --------------------------------------------------------------------------- bottom line

NOT_TESTED = "not tested"
BL_NOT_TESTED = "No attempt of this model on this work was planned or recorded: not tested."
BL_EFFORT = (
    "casekit recorded {recorded} of {planned} planned attempts ({benign} benign, {adversarial} "
    "adversarial, {reconstruction} reconstruction) on {models}, {subjects} and {controls}, "
    "from {first} to {last} (UTC, this machine's "
    "clock).")
BL_EFFORT_NONE = (
    "casekit planned and sent no attempts in this case ({subjects} and {controls}).")
BL_IMPORTED_ONLY = ("The {imported} analyzed here {were} captured outside casekit and "
                    "imported; the effort table counts them and Methods states their "
                    "provenance.")
BL_IMPORTED = ("A further {imported} {were} captured outside casekit and imported; "
               "{they_are} counted apart in the effort table.")
BL_RULE = (
    "A span counts as evidence from {words} words (a short or CJK work's own threshold where "
    "its line gives another). The counts below are of generation attempts matched against the "
    "work for spans, by the intent of their prompt; name-cloze answers and teacher-forced "
    "windows are measured otherwise and are not in them. Memorization is concluded when "
    "reconstruction reaches the case's reconstruction threshold: a contiguous block of at least "
    "{sp_words} words OR coverage of at least {sp_share} of the work; either one suffices.")
BL_TEST_METHOD = (
    "Subject against control: Fisher's exact test [Fis22], one-sided (is the subject's rate "
    "higher than its control's?), on the generation attempts of each with a span at the "
    "subject work's reporting threshold (a short or CJK work's scaled one on both sides), "
    "every intent, refusals included, attempts that failed or could not be scored left out "
    "on both sides. It is exact at the small counts a control has, where "
    "an approximation is not. The p-values are Holm-Bonferroni adjusted [Hol79] over every "
    "model x subject work tested, so the chance of any false difference across the whole "
    "report stays at most {alpha} ({tests} tests).")
BL_INTENT = "{k_of_n} {intent}"
BL_INTENT_NOT_TESTED = "{intent}: not tested"
BL_SUBJECT = (
    "Prompts with a span of {words} {unit} or more: {intents}. "
    "Reconstruction by all means: coverage {coverage}, longest contiguous block {block} {unit}; "
    "the reconstruction threshold is {reached}.")
BL_REACHED = "reached"
BL_NOT_REACHED = "not reached"
BL_CONTROL = (
    "Control, a text the model cannot have seen: {k_of_n} generation attempts with a span of "
    "{words} {unit} or more, the rate of chance reproduction of an unseen text (one-sided 95% "
    "upper bound {upper}).")
BL_TEST = (
    "Against the control: {subject} generation attempts with a span (every intent; those "
    "that failed or could not be scored left out), control {control} at the same threshold; "
    "one-sided Fisher's exact p {p}, Holm-adjusted p {p_adj}: {verdict}")
BL_EXCEEDS = "the subject's rate exceeds the control's (5% level)."
BL_NOT_SHOWN = "not shown to exceed the control's rate (5% level) in these attempts."
BL_NO_TEST = "Not tested against a control: this model has no control generation attempts."
BL_NO_SUBJECT = "Not tested against the control: no generation attempts on this work."
BL_THUMB = (
    "A {words}-word near-verbatim span (word similarity at least {near_exact}), {model_id} "
    "\u00d7 {title}, ledger seq {seq}{exhibit}. Its longest run of exactly matching words is "
    "{verbatim}; only exactly matching words count toward coverage and the contiguous block, "
    "so the two lengths differ.")
BL_THUMB_EXHIBIT = "; Exhibit {ref}"

# --------------------------------------------------------------------------- effort

EFFORT_NONE = "none"
EFFORT_NOT_PLANNED = "not planned (imported)"
EFFORT_PLANNED_COMPLETE = ("The run is complete: every planned attempt is recorded, so each row's "
                           "planned count equals its recorded count.")
EFFORT_PLANNED_COMPLETE_IMPORTED = (
    "The run is complete: every planned attempt is recorded, so each row of casekit's attempts "
    "has a planned count equal to its recorded count; imported outputs were not planned.")
EFFORT_NOTHING_PLANNED = (
    "casekit planned no attempts in this case: every row counts imported outputs, captured "
    "outside casekit.")
EFFORT_PLANNED_INCOMPLETE = (
    "The run is incomplete ({recorded} of {planned} planned attempts recorded): the plan is "
    "counted per model (cover), not per row here; a dash stands for the planned count of a "
    "row.")

SENSITIVITY_NOTE = (
    "The same generation attempts counted at other reporting thresholds: 15 words (short "
    "works), 40 words (casekit's default) and 50 words (about the 50-token sequences of the "
    "extraction literature [Car23; Nas23]) are research conventions, which no court or statute "
    "sets; 100 words is a stricter alternative. Each cell counts the attempts whose "
    "longest credited span reaches that length, over the generation attempts that returned an "
    "output (failed and unscorable ones left out, refusals included): the attempts of the test "
    "against the control.")

# --------------------------------------------------------------------------- disclosures

NOT_RECORDED = "not recorded"
DISCLOSE_RUNTIME = (
    "llama.cpp through llama-cpp-python {binding} (the binding pins its llama.cpp build), in "
    "process on the CPU; weights {gguf}, quantization {quant} (read from the GGUF file); "
    "settings that change the numbers: {settings}")
DISCLOSE_EXTRA_BUFTS = (
    "use_extra_bufts is casekit's setting of llama.cpp's extra buffer types; loading the same "
    "GGUF with llama-cpp-python's default instead moves per-token log-probs measurably (on "
    "Gemma 3 270M by 0.26-1.94 nats), so a reproduction must use the settings above.")
DISCLOSE_NO_RERUN = (
    "No re-run was made: each attempt was sent once in this run, and whether the model gives "
    "the same outputs on another day was not tested (casekit rerun measures it).")
DISCLOSE_NO_RERUN_IMPORTED = (
    "No re-run is possible from this case: casekit sent no request in it; every output was "
    "captured outside casekit, and whether the services give the same outputs again was not "
    "tested.")
DISCLOSE_NO_LOCAL = (
    "No local model ran in this case: the models were served by their providers, whose runtime "
    "and numerics are not disclosed to casekit (see the manifest for what each reported).")
DISCLOSE_NO_MODEL = (
    "casekit ran no model in this case: every output it analyzes was captured outside casekit "
    "and imported.")
DISCLOSE_RERUN = "This run is a re-run; its comparison with the first run is under Reproducibility."
DISCLOSE_IS_RERUN = "This run repeats run {run}; see Reproducibility."
DISCLOSE_TIME = (
    "Every time in this report and its ledger is this machine's clock, in UTC, as casekit "
    "read it; no independent time source confirms it. {server}")
DISCLOSE_SERVER_DATES = ("{n} {carry} the provider's own HTTP Date header, recorded "
                         "verbatim beside casekit's time.")
DISCLOSE_NO_SERVER_DATES = "No response carries a server's date to compare with."
DISCLOSE_ANCHOR = (
    "The ledger is signed by the examiner's Ed25519 key, fingerprint {fp}: {anchored}. The key "
    "shows who closed the ledger, not when: compare the fingerprint with the one the examiner "
    "disclosed (casekit verify --expect-key).")
DISCLOSE_NO_ANCHOR = (
    "The ledger is not signed by an examiner key ({anchored}); the hash chain shows the ledger "
    "was not altered after the fact only together with a copy of its head hash held elsewhere.")
DISCLOSE_RUN_TSA = (
    "{stamped} of the ledger's {checkpoints} checkpoints carry an RFC 3161 token from {tsa} "
    "obtained during the run: a third party's time for the records they cover.{errors}")
DISCLOSE_RUN_TSA_ERRORS = " {n} could not be timestamped (the TSA failed)."
DISCLOSE_NO_RUN_TSA = (
    "No checkpoint was timestamped by a timestamp authority during the run (no TSA was "
    "configured for casekit run), so no third party confirms when the records were made.")
DISCLOSE_REPORT_TSA = (
    "This report was rendered to be timestamped: casekit report --tsa {tsa} asks that authority "
    "for an RFC 3161 token over manifest.json once the PDF is written and embeds it "
    "(manifest.tsr). This page is set before the token exists, so it cannot say whether it was "
    "granted: casekit verify on this PDF says, and gives the token's time.")
DISCLOSE_NO_REPORT_TSA = ("The report itself was not timestamped (casekit report was run "
                          "without --tsa).")
DISCLOSE_REPORT_SIGN = (
    "A PAdES signature is applied to a copy of this PDF, report.signed.pdf, once it is written "
    "(casekit report --sign); the pages are the same, and casekit verify checks the signature "
    "of that copy. This file, if it is not that copy, is not signed.")
DISCLOSE_NO_REPORT_SIGN = ("The PDF carries no signature (casekit report was run without "
                           "--sign).")
DISCLOSE_OPERATOR = ("Operated by {operator} (case.operator); the run's machine account was "
                     "{account} on host {host}, which names the machine, not a person.")
DISCLOSE_NO_OPERATOR = (
    "The case names no operator (case.operator); the examiner is on the cover. The run's "
    "machine account was {account} on host {host}, which names the machine, not a person.")

# --------------------------------------------------------------------------- summary

NO_TF_WINDOWS = "no teacher-forced windows"
TF_DETAIL = "{windows} windows, {greedy} reproduced greedily"

# --------------------------------------------------------------------------- methods

#: The research convention behind casekit's default reporting threshold, printed when a case
#: lowers its thresholds. No court or statute sets such a threshold.
LEGAL_DEFAULT_TEXT = ("casekit's default of 40 words, about the 50-token sequences that "
                      "extraction research conventionally counts [Car23; Nas23]")
LEGAL_NOTE = ("The case lowered the reporting threshold below {legal_defaults}: a span counts "
              "here from {min_span_words} words. This threshold is a research convention, which "
              "no court or statute sets; figures in this report are not comparable with "
              "findings made at the conventional length.")
PROFILE_USE_LABELS = {"spans": "Spans, coverage and word thresholds", "bmc": "BMC@k"}
PROFILE_TEXT = {
    "raw": "the text as ingested; exhibits quote raw text through offset maps",
    "light": "NFKC; curly quotes to ASCII; dash variants to em dash; ellipses unified; _x_ "
             "italics markers removed; lowercase; whitespace collapsed; words hyphenated across "
             "a line break joined [Ahm26 App. C.3]",
    "words": "tokens \\w+|[^\\w\\s]+ on the raw text, lowercased, keeping tokens that contain "
             "[a-z0-9] (the [Liu26] profile, so figures are comparable with published ones)",
    "light-words": "the light profile, then the words tokenizer: casekit's default for span "
                   "finding and word thresholds",
}
THRESHOLD_LABELS = {
    "near_exact": ("Near-exact similarity", "minimum normalized word-level edit similarity of "
                   "a near-verbatim span"),
    "min_span_words": ("Reporting threshold", "a span of at least this many words counts as "
                       "evidence"),
    "substantial_portion_min_words": ("Reconstruction threshold: contiguous block", "a "
                                      "reconstructed block of at least this many words..."),
    "substantial_portion_min_share": ("Reconstruction threshold: coverage", "...or this share "
                                      "of the work's words (either one suffices)"),
    "seed_k": ("Seed k-gram (k)", "exact k-grams that seed a span; k of BMC@k"),
    "m_gram": ("Prompt m-gram trim (m)", "work positions whose m-gram occurs in the prompt are "
               "never credited"),
    "echo_min_words": ("Echo removal", "output runs of at least this many words found in the "
                       "prompt are removed"),
    "legal_defaults": ("Conventional thresholds", "false when the case deliberately lowers "
                       "thresholds below the research conventions casekit defaults to"),
}
THRESHOLD_SHARE = "{share} of the work's words"
THRESHOLD_WORDS = "{value} words"
#: Labels of the definitions under Methods, in this order (the rest follow, sorted).
DEFINITION_LABELS = {
    "span": "Span",
    "leakage": "Prompt-leakage discount",
    "rate": "Rate",
    "coverage": "Coverage",
    "longest_block": "Longest contiguous block",
    "bmc": "BMC@k",
    "longest_regurgitated": "Longest regurgitated span",
    "control_floor": "Control floor",
}
#: Order of the definitions under Methods (a measure's label is the measure's own; the
#: teacher-forced top-1 share sits among the core definitions), the rest follow sorted.
DEFINITION_ORDER = ("span", "leakage", "rate", "coverage", "longest_block", "bmc",
                    "longest_regurgitated", "top1_share", "control_floor")
#: Labels of the report's own definitions the further measures cite by key, and their place
#: in the list (a measure's label and place are the measure's: Measure.further_order).
FURTHER_DEFINITION_LABELS = {
    "intervals": "Intervals",
    "spans_over_t": "Spans > T",
    "longest_block": "Longest contiguous block",
    "bmc": "BMC@k",
    "comparison": "Model comparison",
    "coverage": "Coverage",
}
FURTHER_DEFINITION_ORDER = {"intervals": 0, "spans_over_t": 70, "longest_block": 80, "bmc": 90,
                            "comparison": 110, "coverage": 120}
ALL_MODELS = "all models"
ALL_WORKS = "all works"
NOT_SET = "not set"
DECODING_ROWS = {
    "temperature": ("Temperature", "sample 0 of every prompt is greedy (temperature 0); "
                    "further samples use this temperature"),
    "max_tokens": ("Max tokens", "sent with every generation request, unless a strategy "
                   "states its own limit (shown with the attempt as the strategy's)"),
    "top_p": ("top_p", ""),
    "top_k": ("top_k", ""),
    "samples": ("Samples per prompt", ""),
    "seed": ("Seed", "seed of the plan; sample s is sent with seed + s where the provider "
             "supports one"),
}

# --------------------------------------------------------------------------- exhibits

COLUMN_CUT = ("[casekit: this column shows characters {first}\u2013{last} of {total}; the whole "
              "text is Appendix {ref}]")
MORE_SPANS = ("{shown} of {total} spans are shown and listed; the other {more} are in the "
              "run's analysis (attempts.parquet) and count in every measure.")
PROMPT_PART = "prompt ({role})"
MODEL_OUTPUT = "model output"
WORK_EXCERPT = "original text, work chars {start}\u2013{end}"
HIGHLIGHT_FALLBACK = ("The recorded word offsets do not line up with this casekit version's "
                      "tokenizer; whole spans are highlighted instead of word by word.")
NOT_REPORTED_BY_PROVIDER = "not reported by the provider"
NOT_REPORTED = "not reported"
NOT_RECORDED = "not recorded"
IMPORTED_PROMPT_GIVEN = " (the prompt below is the passage or prefix the source says was given)"
DECODING_IMPORTED = "unknown: the request was sent outside casekit (imported output)"
IMPORTED = "IMPORTED: captured outside casekit; casekit sent no request"
SPAN_DETAIL = "work chars {chars}, {words} {unit} ({matched} exact), similarity {similarity}"
LONG_TEXT_NOTE = "{what}, {chars} characters"
LONG_TEXT_NOTE_PART = "{what}, {chars} characters (shown in part: {first}\u2013{last})"
COLUMN_CUT_PART = ("[casekit: this column shows characters {first}\u2013{last} of {total}; "
                   "Appendix {ref} shows characters {a_first}\u2013{a_last}, and the whole text "
                   "is in the ledger attached to this PDF]")
APPENDIX_PART = ("[casekit: shown in part: characters {first}\u2013{last} of {total}. The whole "
                 "text is in the ledger attached to this PDF (ledger.jsonl, attempt "
                 "{attempt}); its SHA-256 is above.]")
MORE_EXHIBITS = ("{more} reached the reporting threshold for this model and "
                 "work and {are} not exhibited: {each} counts in the rates above and is in the "
                 "complete per-attempt listing attached to this PDF, with its longest span "
                 "(see Attempts by stratum).")
ALL_EXHIBITS = ("Every attempt that reached the reporting threshold for this model and work is "
                "shown.")

# --------------------------------------------------------------------------- attempts

SAMPLE_LABEL = "{label}, sample {sample}"

# --------------------------------------------------------------------------- manifest, custody

RUN_NOT_ENDED = "no run_end record (run not finished)"
NOT_INSTALLED = "not installed"
CASE_HASH_CITED = "attached (Source); the case hash the ledger cites"
CASE_HASH_OTHER = "attached (Source); the ledger cites {case_sha256}"
WORK_ATTACHED = "attached as {name} (Source)"
WORK_NOT_ATTACHED = "not attached (the reference text; its hash identifies it)"
TEMPLATES_SHIPPED = "not attached; the set casekit ships"
TEMPLATES_OVERRIDDEN = "not attached; overridden: {names}"
ANCHOR_NO_KEY = "none: the run was recorded by a casekit that did not sign its ledgers"
ANCHOR_NONE = ("not anchored: no checkpoint is signed by an examiner key, so the ledger's hashes "
               "prove its integrity only against a head hash obtained some other way")
ANCHOR_TO = ("records 0 to {covers} of {records} are covered by checkpoints signed with this "
             "key{closing}{tsa}")
ANCHOR_CLOSING = ", the last of them closing the ledger"
ANCHOR_OPEN = "; the records after the last checkpoint are not covered"
ANCHOR_TSA = "; the checkpoints were timestamped during the run by {tsa}"
KEY_FINGERPRINT = "fingerprint {fingerprint} (never the key)"
EVENT_RUN_STARTED = "run {run_id} started{at}: {planned} attempts planned, case {case_sha256}"
EVENT_FIRST_ATTEMPT = "first attempt recorded"
EVENT_LAST_ATTEMPT = "last attempt recorded ({n} in all)"
EVENT_FIRST_IMPORTED = "first imported output recorded"
EVENT_LAST_IMPORTED = "last imported output recorded ({n} in all)"
EVENT_NOTE = "note ({kind}): {message}"
EVENT_RUN_ENDED = "run ended: {recorded} of {planned} attempts recorded{incomplete}"
NOTES_NOT_SHOWN = ("{more} in the ledger {are} not listed here ({kinds}); every note is "
                   "a record of the attached ledger (ledger.jsonl).")

# --------------------------------------------------------------------------- reproducibility

RERUN_NO_COMPARISON = ("no comparison.json in this run's folder (the re-run did not complete, "
                       "or the file was removed)")
RERUN_COMPARED = "computed by casekit rerun from both ledgers when this run ended"
RERUN_HEAD_MOVED = " (this ledger's head was then {head}; records were added since)"

# --------------------------------------------------------------------------- limitations

LIMIT_ECHO = (
    "Prompt echo is discounted: output runs of {echo_min_words} or more words found in the "
    "prompt were removed before matching ({echo_words} words in {echoed} of {generations} "
    "generation attempts), and work text the tester supplied in a prompt is never credited to "
    "the model. Exhibits mark that supplied text in the prompt column.")
LIMIT_QUOTED = (
    "Widely quoted text: a span may reproduce a passage that circulates on its own (famous "
    "openings, epigraphs, public-domain quotations inside the work); such a passage can reach "
    "a model through quotations rather than the work. casekit does not check whether a matched "
    "passage is quoted elsewhere. Short spans (8 words or fewer) occur by chance between "
    "unrelated texts, so no span under {min_span_words} words counts here.")
LIMIT_VARIANCE = (
    "Outputs vary between calls (sampling, provider-side changes). Every figure is over the "
    "attempts recorded in this ledger ({samples} per prompt); repeated samples and "
    "overlapping windows are not independent, and the intervals here treat attempts as "
    "independent.")
LIMIT_FAILURES = (
    "Attempts that ended in an error: {errors}; in a refusal: {refusals}; that could not be "
    "scored: {unscorable}. Each stays in the denominators of the regurgitation and "
    "extraction rates (as not reproduced), is counted in Attempts by stratum and is in the "
    "complete per-attempt listing attached to this PDF. The control floor and the test against "
    "it leave failed and unscorable attempts out, on both sides alike: a failure would lower "
    "the floor.")
LIMIT_INCOMPLETE = (
    "The run is incomplete: {recorded} of {planned} planned attempts were recorded. The "
    "figures cover the recorded attempts only.")
IMPORTED_KIND = "{kind} (analyzed as casekit's {strategy} attempts)"
IMPORTED_UNSTATED = "no kind stated (analyzed as free-form: span matching by declared intent)"
IMPORTED_FILES = "{n} from {files}"
IMPORTED_SOURCES = "sources as recorded: {sources}"
IMPORTED_FIELD = "{what} recorded for {k} of {n}"
IMPORTED_WINDOW = "captured {first} to {last} (UTC, as the sources state)"
IMPORTED_AT = "captured {at} (UTC, as the source states)"
IMPORTED_DECODING = "decoding stated for {k} of {n} (otherwise unknown)"
IMPORTED_MISSING = "{what} not recorded for {k} of {n}"
IMPORTED_INTRO = (
    "Outputs captured outside casekit (casekit import): casekit sent none of these requests. "
    "What the sources recorded of how each was obtained, by the kind of attempt the importer "
    "stated; a field the source lacks is printed \u201cnot recorded\u201d, never filled in.")
LIMIT_IMPORTED_UNSTATED = (
    " Of them, {unstated} stated no kind of attempt; such outputs are analyzed as free-form (span "
    "matching by their declared intent): a name-cloze answer or a prefix continuation among "
    "them is not measured as one.")
LIMIT_IMPORTED_MISSING = " The sources did not record everything: {missing}."
LIMIT_IMPORTED = (
    "Imported outputs: {imported} {were} captured outside casekit (casekit import) "
    "and {are} counted in the figures as the kind of attempt their importer stated, with its "
    "intent (Methods, Imported outputs). casekit did not "
    "send those requests: their prompts, times and decoding parameters are as the capture "
    "states them and cannot be re-run or verified against the provider; each is labelled "
    "IMPORTED in its exhibit, and its strategy key begins with imported@ in Attempts by "
    "stratum and in the complete per-attempt listing.")
LIMIT_NO_FLOOR = (
    "No control generation attempts for {models}: no rate of chance reproduction of an "
    "unseen text was measured for {which}, and {whose} figures stand without a floor.")
LIMIT_TOOLS = (
    "Retrieval or tools: {requests} of the {checked} requests casekit sent and recorded with a "
    "response offered the model tools or retrieval ({keys}...) and {responses} of their "
    "responses report a tool call or citations. Text in those outputs may have been retrieved "
    "rather than recalled.")
LIMIT_NO_TOOLS = (
    "Retrieval or tools: none of the {checked} requests casekit sent and recorded with a "
    "response offered tools, functions or retrieval, and none of their responses reports a "
    "tool call (each raw request and response in the ledger was checked).")
LIMIT_TOOLS_PROVIDER = (
    "A provider could still retrieve text on its side without reporting it.")
LIMIT_TOOLS_NONE_SENT = (
    "Retrieval or tools: no request casekit sent holds a response, so none was read for tools.")
LIMIT_TOOLS_UNANSWERED = (
    "{n} of requests that ended without a response {hold} no output and {are} "
    "not among them.")
LIMIT_TOOLS_IMPORTED = (
    "For the {n} casekit did not send {the_requests} and "
    "holds only the prompt and output as captured, not the service's request or response, so "
    "whether tools, browsing or retrieval produced {them} is unknown (a chat service may "
    "retrieve text from the web without showing it).")
LIMIT_MODEL = ("Model {model_id} {notes}. Figures for it describe the model as served during "
               "this run.")
MODEL_ALIAS = ("was requested as {model}, a name that may be an alias the provider points at "
               "different snapshots over time")
MODEL_RETURNED_MANY = "returned {n} different model ids ({ids})"
MODEL_RETURNED_OTHER = "was requested as {model} and reported itself as {returned}"
MODEL_FINGERPRINTS = ("reported {n} different system fingerprints during the run (the serving "
                      "configuration changed)")
LIMIT_OPENINGS = (
    "Openings: {opening} of the {hits} subject attempts that reached the reporting threshold "
    "reproduce text within the first {opening_words} words of the work, the part most often "
    "quoted on its own; matches deeper in a work are harder to explain by quotation.")
LIMIT_EXCLUDED = "Excluded passages (never counted): {passages}."
EXCLUDED_GROUP = "{work}: {passages} ({reason}), characters {ranges}"
LIMIT_BOILERPLATE_KEPT = (
    "Detected boilerplate counted as the work's text (the case file sets boilerplate: keep for "
    "{work}): {passages}.")
WARN_BOILERPLATE = (
    "Warning: {inside} of the {total} work words matched by {model}'s attempts on {work} that "
    "reached the reporting threshold ({share}) lie inside detected Project Gutenberg "
    "boilerplate, which the case counts as the work's text. Those matches reproduce the "
    "distributor's notice or licence, not the work; do not rely on them as evidence about the "
    "work.")
LIMIT_NONE_EXCLUDED = (
    "No passage of any work was excluded: quotations of third-party or public-domain text "
    "inside a work, if any, count as the work's own text.")
LIMIT_FILTERS = (
    "Refusals and filters: {filtered} ended with a content filter or refusal stop "
    "reason; refusals by source: {by_source}. A refused or filtered attempt shows nothing "
    "either way and stays in every denominator.")
LIMIT_SMALL = (
    "Small samples: fewer than 30 attempts stand behind a rate of {findings}; the 95% interval "
    "printed beside each figure shows how much a single attempt more or less could change it.")

# --------------------------------------------------------------------------- reliability

IMPORTED_NO_TRIES = " (imported: no tries)"
FAILED_TRIES = "{transient} transient, {rate_limit} rate limit, {no_retry} not retried"
FAILED_TRIES_UNKNOWN = ", {unknown} unknown"
RESENT = ("{n} {were} sent again by casekit run --retry-failed: each "
          "attempt is counted once, by the outcome of its last record, and its tries include "
          "those of its earlier records. The failed records stay in the ledger and are counted in "
          "Failed tries.")

# --------------------------------------------------------------------------- further measures

CONTROL_WORK_OF = "Control work of {model_id}: {title}"
NOT_MEASURED = "not measured"
#: Labels of the report's own rows of the measures table (a measure's rows are its own:
#: Measure.report_rows).
MEASURE_LABELS = {
    "spans_over_t": "Spans > T (T = 20 words)",
    "longest_block": "Longest block: BMC@5 / light-words",
    "longest_regurgitated": "Longest regurgitated span [Liu26]",
}
WORDS_N = "{n} words"
REGURGITATED_NOTE = "one generation against its own target excerpt, untrimmed ({attempt})"
REGURGITATED_NONE = "no generation matched its own target excerpt"
N_WINDOWS = "{n} windows"
NO_GENERATIONS = "no generation attempts"
SPANS_OVER_T_NOTE = "spans > 20 words"
BLOCKS = "{bmc5} (BMC@5) / {light} (light-words)"
#: A short work's headline (summary): coverage as a share of the work comes first.
SHORT_HEADLINE = ("Short work ({kind}): {share} of the work reproduced ({covered} of {total} "
                  "counted {unit}, {refrain}); longest block {block} {unit}; reporting "
                  "threshold {min_span} {unit}, scaled to the work.")
REFRAIN_ONCE = "the repeated refrain counted once"
NO_REFRAIN = "no repeated refrain"
#: Limitation: a CJK work rendered without a CJK font.
LIMIT_NO_CJK_FONT = ("No font with Chinese or Japanese glyphs was installed when this PDF was "
                     "rendered: the text of {works} may show as empty boxes here (the HTML "
                     "report, findings.json and the ledger hold it exactly). Install such a "
                     "font (e.g. Noto CJK) and render the report again.")
#: A short work's passage the output has more than once (a chorus sung again): shown once.
EXCERPT_REPEATS = "{n} times in the output, shown once"
#: A short work's chance baseline (summary).
CHANCE_TEXT = ("Chance baseline: the case's other texts ({words} {unit}: {works}) share {shared} "
               "with this work ({reaching} runs of {min_span} {unit} or more); {hits} of {n} "
               "control attempts, every model's in this case pooled (each model's own are in "
               "its control floor), had a span of {min_span} {unit} or more (longest "
               "{clongest}).")
CHANCE_SHARED = "at most {longest} consecutive {unit}"
CHANCE_NONE_SHARED = "no run of {k} consecutive {unit} or more"
CHANCE_NO_REFS = "no other text of the case to compare (a chance baseline needs one)"
#: A work measured on its own basis (methods): its unit, thresholds and profiles.
WORK_BASIS_NOTE = ("reporting threshold {min_span} {unit}; reconstruction threshold {block} "
                   "contiguous {unit}; profiles {spans} (spans), {bmc} (BMC@k)")
BLOCKS_NOTE = "words profile mask / light-words coverage mask"
#: Rates of the interval table, by their key in ModelWorkFinding.bootstrap.
INTERVAL_LABELS = {
    "regurgitation": "Regurgitation (benign attempts)",
    "extraction": "Extraction (adversarial attempts)",
    "discoverable_exact": "50/50 discoverable, exact",
    "discoverable_approx": "50/50 discoverable, approximate",
    "teacher_forced_greedy": "Teacher-forced windows, greedy p_z = 1",
}
WILSON_ONLY = "Wilson / Clopper-Pearson only"
BOOTSTRAP_ONLY = "bootstrap only"
NO_BOOTSTRAP = "no bootstrap interval (nothing scored)"
NO_BOOTSTRAP_ONE = ("no bootstrap interval: a single {unit} (resampling one cluster gives no "
                    "spread)")
BOOTSTRAP = ("95% cluster-bootstrap {lo}\u2013{hi} over {clusters} clusters, each {article} "
             "{unit} ({resamples} resamples, seed {seed})")
CENSUS_SUMMARY = ("{windows} windows scored of {planned} planned{failed}; their suffixes cover "
                  "{scored} of the work's {counted} counted characters ({share})")
CENSUS_FAILED = ", {n} failed"
NO_CONTROL_CENSUS = "no census of a control work for this model"
#: Coverage map rows: (key, label, note).
COVERAGE_ROWS = (
    ("extraction", "Extraction", "adversarial attempts' spans"),
    ("regurgitation", "Regurgitation", "benign attempts' spans"),
    ("reconstruction", "Reconstruction", "all means: every span and the teacher-forced "
                                         "windows reproduced greedily"),
)
COVERED_WORDS = "{covered} of {total} words ({share})"
LONGEST_PASSAGE = "{n} words (words {where})"
UNDEFINED = "undefined"
EMPTY_DENOMINATOR = "an empty denominator"
NO_SUCCESS = "no success in either model"
NO_INTERVAL = "no interval"
RATIO_METHODS = {"katz-log": "Katz log"}
#: Outcomes of attempts that are not span-matched (report.views.outcome_label).
OUTCOME_CORRECT = "correct answer"
OUTCOME_WRONG = "wrong answer"
OUTCOME_GREEDY = "reproduced greedily"
OUTCOME_NOT_GREEDY = "not reproduced greedily"
RATIO_NOT_ESTIMABLE = "not estimable"
RATIO_CORRECTED = ("{counts}: none for model {model}, so the ratio is {value}. With 0.5 added "
                   "to every cell (a convention, not data): {ratio}, {ci}, {method}.")
RATIO_UNBOUNDED = "unbounded"
RATIO_ZERO = "0"
OVERLAP_DETAIL = "both {both} / either {either} of {total} positions (A {a}, B {b})"

# --- reconstruction exhibits (sections/reconstruction.py) ------------------------------------
BLOCK_KIND_OUTPUT = "model output"
BLOCK_KIND_TF = "teacher-forced window"
BLOCK_TF_OUTPUT = ("A teacher-forced window: no text was generated; the model's top choice was "
                   "the work's next token at every token of the window, so its words count as "
                   "reproduced.")
BLOCK_SAME_OUTPUT = "The same output text as {tag} (shown there once, not repeated)."
BLOCK_SUPPLIED = "characters {chars} ({words} words)"
BLOCK_SUPPLIED_INSIDE = ", partly inside the block (marked)"
BLOCK_SUPPLIED_OUTSIDE = ", outside the block"
BLOCK_NOTHING_SUPPLIED = "none"
BLOCK_SUPPLIED_TAG = "[prompt of {tags}]"
BLOCK_START_MARK = "[block starts]"
BLOCK_END_MARK = "[block ends]"
BLOCK_DECIDES = (
    "This block decides the memorization finding: it is {words} contiguous words, the case's "
    "reconstruction threshold is {threshold}, and it is stitched from the outputs of {k} "
    "attempts. No single output covers more than {single} contiguous words of it: the "
    "conclusion rests on stitching.")
BLOCK_REACHES_NOT_DECIDING = (
    "This block is {words} contiguous words (the case's reconstruction threshold is "
    "{threshold}); the finding is \u201c{status}\u201d.")
BLOCK_BELOW = (
    "This block is {words} contiguous words, below the case's reconstruction threshold of "
    "{threshold}: it does not decide the memorization finding and is shown because it is the "
    "longest block reported.")
BLOCK_OTHERS = (
    "{total} attempts cover words of this block. The {shown} shown are the fewest whose "
    "outputs cover it whole (from the block's start, each time the output reaching furthest) "
    "and the one with the longest single run in it; the other {others} overlap them and add no "
    "word. All {total} are listed, with their ledger hashes, in findings.json "
    "(coverage.longest_block_attempts of this model and work) and in the per-attempt listing.")
BLOCK_OTHERS_PART = (
    "{total} attempts cover words of this block. The {shown} shown are the fewest whose "
    "outputs cover the part shown (from the block's start, each time the output reaching "
    "furthest) and the one with the longest single run in the whole block. All {total} are "
    "listed, with their ledger hashes, in findings.json (coverage.longest_block_attempts of "
    "this model and work) and in the per-attempt listing; every output is in the ledger "
    "attached.")
BLOCK_SHOWN_PART = (
    "Shown in part: the block is {words} words; this exhibit shows its first {shown} (work "
    "words {range}, characters {chars}), as every reconstruction exhibit shows at most "
    "{cap} words of a block. The block's length, the attempts that build it and the longest "
    "single run above are computed over the whole block, and casekit verify recomputes them "
    "from the attached ledger.")
BLOCK_SHOWN_END_MARK = "[part shown ends; the block continues for {more} more words]"
BLOCK_LONGEST_SINGLE = "{words} contiguous words, from attempt {tag} (ledger seq {seq})"
STITCHED_NOTE = (
    "This conclusion rests on stitching: the {words}-word block is assembled from {k} "
    "attempts' outputs, and no single output covers more than {single} contiguous words of it "
    "(Exhibit {ref}).")
SPAN_START_MARK = "[match starts]"
SPAN_END_MARK = "[match ends]"
SHORT_SPANS_NOTE = ("{n} of this output with the work (under {min_words} "
                    "{unit}, the reporting threshold) {are} not shown or marked as matches.")
SAME_OUTPUT_NOTE = ("The output of attempt {attempt} (ledger seq {seq}, {strategy}) is the same "
                    "text as this one or a part of it; it is not exhibited twice.")

# --------------------------------------------------------------------------- glossary

GLOSSARY_TITLE = "Terms used in this report"
GLOSSARY_INTRO = (
    "The words of the tables that follow, in brief. Each is defined in full under Methods, "
    "Definitions (the key in brackets), with the thresholds this case applied.")
#: Definition key -> (term, short definition). A term is glossed when its definition is in
#: findings.json (its measure ran); the placeholders are the case's thresholds.
GLOSSARY = {
    "span": ("Span", "a run of output words aligned with a run of the work's words, verbatim "
             "or near-verbatim (word-level edit similarity at least {near_exact}), seeded by "
             "exact {seed_k}-word matches; a span counts as evidence from {min_span_words} "
             "words (the reporting threshold)."),
    "coverage": ("Coverage", "the share of the work's counted words covered by the spans of "
                 "all attempts together."),
    "longest_block": ("Block (longest contiguous block)", "the longest run of consecutive work "
                      "words covered; it may be stitched from several outputs. The "
                      "reconstruction threshold is a block of {block_words} words or coverage "
                      "of {block_share}: either one suffices."),
    "control_floor": ("Control floor", "the share of a model's generation attempts on its "
                      "control works (texts it cannot have seen) with a span of "
                      "{min_span_words} words or more, over those that returned an output "
                      "(failed and unscorable ones left out): chance reproduction of an unseen "
                      "text, with a one-sided 95% upper bound."),
    "bmc": ("BMC@k", "the share of the work's words covered by exact matches of at least k "
            "words (words profile) across all outputs, words the prompts supplied trimmed "
            "[Liu26]."),
    "top1_share": ("Top-1 share (teacher-forced)", "the work's text is fed to the model; the "
                   "share of the continuation's tokens that are the model's most probable next "
                   "token."),
    "p_z": ("p_z", "the probability that the model's decoding produces a window's continuation "
            "given the text before it; greedy p_z = 1 means greedy decoding reproduces it "
            "exactly."),
    "np_discoverable": ("(n,p)-discoverable", "a window the model would produce at least once "
                        "in n tries with probability p or more, computed from p_z."),
    "nv_recall": ("nv-recall", "how much of the work an iterative-continuation session "
                  "recovers, its turns taken together [Ahm26]."),
    "intervals": ("Wilson, Clopper-Pearson, cluster bootstrap", "95% intervals around a k-of-n "
                  "rate: the first two treat attempts as independent; the bootstrap resamples "
                  "whole clusters (e.g. all samples of one prompt) where they are not."),
}
GLOSSARY_PROFILE = ("light-words", "the normalization under which words are compared: {text}; "
                    "the light profile: {light}.")

# --------------------------------------------------------------------------- matcher validation

VALIDATION_TITLE = "Validation of the matcher on planted passages"
VALIDATION_PROCEDURE = (
    "When this report was rendered, casekit planted {per_work} passages of each of the run's "
    "works ({planted} in all) in synthetic outputs and ran its matcher on them exactly as on a "
    "model's output: the same index of each work, near-verbatim similarity at least "
    "{near_exact}, the work's reporting threshold. Each passage is {lo} to {hi} words of the "
    "work, from a position drawn with a seed derived from the ledger head hash ({seed}), with "
    "one edit per {every} words, at least one (a word substituted, deleted or inserted, in "
    "turn), set between {f_lo} and {f_hi} filler words drawn at random from the same work. "
    "Recall is the share of planted passages for which the matcher reports a span at or above "
    "the reporting threshold at the planted place of the work; precision is the share of the "
    "spans it reports that are planted passages. casekit verify recomputes these figures.")
VALIDATION_LIMITS = (
    "What the check does not cover: the prompt-echo and prompt m-gram discounts (no prompt is "
    "involved); copies edited more heavily than the near-verbatim threshold allows, or "
    "paraphrased or translated, which are not spans by definition; and the model side of the "
    "measurement (what a model would output).")
VALIDATION_RESULT = ("Recall: {found} of {planted} planted passages found ({recall}). "
                     "Precision: {true} of {spans} reported spans were planted ({precision}).")
VALIDATION_ROW = "recall {found} of {planted} ({recall}); precision {true} of {spans} ({precision})"
VALIDATION_ROW_NOTE = ("passages of {lo} to {hi} words, {words} words and {edits} edits in all; "
                       "reporting threshold {min_span} {unit}")
VALIDATION_SKIPPED = ("not planted: the work is shorter than its reporting threshold "
                      "({min_span} {unit})")
