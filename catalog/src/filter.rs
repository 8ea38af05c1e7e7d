//! Consul's `?filter=` expression language (HashiCorp go-bexpr), evaluated against the JSON
//! objects the API returns.
//!
//! # Grammar
//!
//! The parser follows go-bexpr's PEG grammar:
//!
//! ```text
//! Expr     := And ( _ "or" _ And )*            -- "and" binds tighter than "or"
//! And      := Not ( _ "and" _ Not )*
//! Not      := "not" _ Not | "(" _? Expr _? ")" | Match
//! Match    := Selector ( _? "==" _? | _? "!=" _? | _ "contains" _ | _ "not" _ "contains" _
//!                      | _ "matches" _ | _ "not" _ "matches" _ ) Value
//!           | Selector _ "is" _ ( "not" _ )? "empty"
//!           | Value _ ( "not" _ )? "in" _ Selector
//! Selector := Ident ( "." Ident | "." [0-9]+ | "[" _? String _? "]" )*
//! Ident    := [a-zA-Z] [a-zA-Z0-9_]*
//! Value    := Selector | Number | String      -- a bare selector stands for its dotted text
//! Number   := "-"? ( "0" | [1-9][0-9]* ) ( "." [0-9]+ )?   -- then whitespace, ")" or the end
//! String   := `raw` | "double-quoted, with Go escapes"
//! _        := [ \t\r\n]+
//! ```
//!
//! Keywords are case-sensitive. A double-quoted string may also hold `\"` (go-bexpr cannot
//! express a quote inside one; this is a superset). Expressions longer than
//! [`MAX_EXPRESSION_LEN`] or nesting parentheses and `not` deeper than [`MAX_NESTING`] are
//! refused, and parsing uses an explicit stack, so no input can exhaust the call stack. At
//! most [`MAX_REGEXES`] regexes are compiled per expression, each with bounded size, so no
//! input can exhaust memory either. Regexes use the Rust `regex` crate, whose syntax is RE2's
//! (as Go's `regexp`), except that `\d`, `\w`, `\s` and `\b` are Unicode-aware here.
//!
//! # Semantics
//!
//! - Values are kept as text and coerced to the type of the field they meet: strings compare
//!   as text, numbers as Go's `strconv.ParseInt(s, 0, 64)` / `ParseFloat` would read them, and
//!   booleans as `strconv.ParseBool` would; a value that cannot be coerced is an error.
//! - `contains` / `in` test membership in an array, the key set of an object, or a substring of
//!   a string. `is empty` holds for an empty string, array or object, and for `null`.
//! - A selector that walks into an array of objects (`Checks.Status == passing`) asks whether
//!   *any* element matches, with the operator — negated ones included — applied to each
//!   element; an empty array matches nothing. So `not Checks.Status != passing` means "every
//!   check passes", the idiom Consul itself uses. A numeric segment (`Checks.0.Status`) indexes.
//! - A missing object key or a `null` on the way answers like go-bexpr's missing map key:
//!   `==`, `in`, `contains`, `matches` and `is not empty` are false; `!=`, `not in`,
//!   `not contains`, `not matches` and `is empty` are true.
//!
//! [`Filter::validate`] checks selectors, operators and value coercions against a sample
//! object, as go-bexpr does against a Go type before any data is filtered.
//!
//! # Why JSON
//!
//! go-bexpr walks Go structs by reflection; Cairn has no such types for every answer, but it
//! has the exact JSON Consul would send. Filtering that JSON gives the same field names and
//! types a Consul user filters on, for every endpoint, with one evaluator. The price is that
//! types come from the data rather than a schema, hence [`Filter::validate`] against a sample.

use regex::{Regex, RegexBuilder};
use serde_json::{Map, Number, Value};

/// Longest expression [`Filter::parse`] accepts, in bytes. Far above any real filter (they fit
/// in a URL), and small enough that parsing, which may back off and retry, stays cheap.
pub const MAX_EXPRESSION_LEN: usize = 64 * 1024;

/// Deepest nesting of parentheses and `not` that [`Filter::parse`] accepts. Evaluation and
/// validation recurse over the tree, so this bounds their stack use; chains of `and` / `or`
/// are flat lists and do not count.
pub const MAX_NESTING: usize = 256;

/// Most `matches` / `not matches` operators one expression may hold: each compiles a regex,
/// and with the size limit on each (1 MiB compiled) this caps what one request can make the
/// server allocate.
pub const MAX_REGEXES: usize = 32;

/// Compiled-size limit for one regex, so [`MAX_REGEXES`] bounds a filter's memory (the regex
/// crate's default, 10 MiB, lets one 64 KiB expression allocate gigabytes).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Lazy-DFA cache limit for one regex: the search-time memory, bounded like the compiled size.
/// Past it the regex crate falls back to slower engines rather than failing.
const REGEX_DFA_SIZE_LIMIT: usize = 1 << 20;

/// A parsed filter expression; regular expressions are compiled once, at parse time.
///
/// Parsed once per request and evaluated against every object of the answer, so everything
/// that can fail on the expression alone (syntax, regexes, limits) fails in [`Filter::parse`].
#[derive(Debug, Clone)]
pub struct Filter {
    expr: Expr,
}

/// Why an expression was refused or could not be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// The expression is longer than [`MAX_EXPRESSION_LEN`].
    #[error("filter expression is {len} bytes long, more than the limit of {max}")]
    TooLong {
        /// Length of the expression, in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Parentheses and `not` nest deeper than [`MAX_NESTING`].
    #[error("{line}:{column} ({offset}): expression nests deeper than {max} levels")]
    TooDeep {
        /// 1-based line of the offending `(` or `not`.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// Byte offset.
        offset: usize,
        /// The limit.
        max: usize,
    },
    /// The expression does not follow the grammar.
    #[error("{line}:{column} ({offset}): {message}")]
    Syntax {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// Byte offset.
        offset: usize,
        /// What was wrong, or what was expected there.
        message: String,
    },
    /// The expression holds more than [`MAX_REGEXES`] `matches` / `not matches` operators.
    #[error("{line}:{column} ({offset}): expression holds more than {max} regular expressions")]
    TooManyRegexes {
        /// 1-based line of the first one too many.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// Byte offset.
        offset: usize,
        /// The limit.
        max: usize,
    },
    /// The value of a `matches` is not a valid regular expression, or compiles too large.
    #[error("Failed to compile regular expression {pattern:?}: {reason}")]
    Regex {
        /// The pattern as written.
        pattern: String,
        /// The regex compiler's complaint.
        reason: String,
    },
    /// A selector names a field the schema does not have.
    #[error("Selector {selector:?} is not valid")]
    InvalidSelector {
        /// The selector, up to and including the unknown field.
        selector: String,
    },
    /// The operator cannot apply to the selected field's type.
    #[error("Invalid match operator {operator:?} for selector {selector:?}")]
    InvalidOperator {
        /// The operator, named as go-bexpr names it (`Equal`, `In`, `Matches`, ...).
        operator: String,
        /// The selector.
        selector: String,
    },
    /// The value cannot be coerced to the selected field's type.
    #[error("Failed to coerce value {value:?} for selector {selector:?}: {reason}")]
    Coerce {
        /// The value as written.
        value: String,
        /// The selector.
        selector: String,
        /// Why the coercion failed.
        reason: String,
    },
    /// The selector goes below a field that is a string, number or boolean.
    #[error(
        "Value at selector {selector:?} with type {kind} does not support nested field selection"
    )]
    NotNested {
        /// The selector up to the scalar field.
        selector: String,
        /// The JSON type found there.
        kind: String,
    },
}

impl Filter {
    /// Parses a go-bexpr expression such as `Service.Meta.version == "2" and not Checks.Status != passing`.
    ///
    /// The empty string is a syntax error here; Consul skips filtering for an empty `?filter=`,
    /// so callers should not parse one.
    pub fn parse(expr: &str) -> Result<Filter, FilterError> {
        if expr.len() > MAX_EXPRESSION_LEN {
            return Err(FilterError::TooLong {
                len: expr.len(),
                max: MAX_EXPRESSION_LEN,
            });
        }
        let mut parser = Parser::new(expr);
        parser.opt_ws();
        if let Some(parsed) = parser.expression()? {
            parser.opt_ws();
            // The whole input must be one expression: trailing text is an error, not ignored.
            if parser.pos == expr.len() {
                return Ok(Filter { expr: parsed });
            }
            parser.expect(Expect::Class("end of input"));
        }
        // Reported at the farthest point any alternative reached, with what it expected there.
        Err(parser.no_match())
    }

    /// Checks every selector against a schema object (a sample output object whose map-valued
    /// fields are `{}` and whose array-of-object fields hold one sample element): unknown field
    /// names, operators the field's type does not support and values that cannot be coerced to
    /// the field's type are errors. Map fields (`{}`) and `null` or `[]` samples accept anything
    /// below them.
    pub fn validate(&self, schema: &Value) -> Result<(), FilterError> {
        self.expr.validate(schema)
    }

    /// Evaluates the filter against one output object.
    ///
    /// Errors come only from the data's types: a value that cannot be coerced to a field's
    /// type, an operator the field's type does not support, or a selector going below a scalar.
    pub fn matches(&self, item: &Value) -> Result<bool, FilterError> {
        self.expr.eval(item)
    }
}

// ---------------------------------------------------------------------------------------------
// Syntax tree and evaluation
// ---------------------------------------------------------------------------------------------

/// The syntax tree. `Or` and `And` hold two terms or more (one term stands alone, see
/// [`combine`]); a chain of either is one flat node, however long.
#[derive(Debug, Clone)]
enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Not(Box<Expr>),
    // Boxed: a match is much larger than the other variants.
    Match(Box<MatchExpr>),
}

/// A match operator. `contains` and `in` are one operator written with the operands either
/// way round: both ask whether the selected field holds the value. Each negated operator is
/// evaluated as its positive form, then flipped ([`Op::base`], [`Op::negated`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Equal,
    NotEqual,
    In,
    NotIn,
    IsEmpty,
    IsNotEmpty,
    Matches,
    NotMatches,
}

impl Op {
    /// go-bexpr's name for the operator, used in error messages.
    fn name(self) -> &'static str {
        match self {
            Op::Equal => "Equal",
            Op::NotEqual => "Not Equal",
            Op::In => "In",
            Op::NotIn => "Not In",
            Op::IsEmpty => "Is Empty",
            Op::IsNotEmpty => "Is Not Empty",
            Op::Matches => "Matches",
            Op::NotMatches => "Not Matches",
        }
    }

    /// Whether the operator is the negation of its [`Op::base`].
    fn negated(self) -> bool {
        matches!(
            self,
            Op::NotEqual | Op::NotIn | Op::IsNotEmpty | Op::NotMatches
        )
    }

    /// The positive form of the operator.
    fn base(self) -> Op {
        match self {
            Op::NotEqual => Op::Equal,
            Op::NotIn => Op::In,
            Op::IsNotEmpty => Op::IsEmpty,
            Op::NotMatches => Op::Matches,
            other => other,
        }
    }

    /// The answer when the selected value is missing or `null`: nothing equals, contains or
    /// matches it, and it is empty. The negated operators answer the opposite, so `!=` on a
    /// missing field is true.
    fn when_absent(self) -> bool {
        (self.base() == Op::IsEmpty) != self.negated()
    }
}

/// One comparison: a selected field, an operator and a value.
#[derive(Debug, Clone)]
struct MatchExpr {
    /// The path to the field: object keys, or digits that index an array.
    selector: Vec<String>,
    op: Op,
    /// The value's text; empty for `is empty` / `is not empty`. Kept as text, because its type
    /// is only known once it meets a field (`80` is a string for a tag, a number for a port).
    value: String,
    /// The compiled value of `matches` / `not matches`.
    regex: Option<Regex>,
}

impl Expr {
    /// Evaluates left to right and stops at the first term that decides an `and` / `or`: the
    /// terms after it are not evaluated, so their type errors do not surface either.
    fn eval(&self, item: &Value) -> Result<bool, FilterError> {
        match self {
            Expr::Or(terms) => {
                for term in terms {
                    if term.eval(item)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Expr::And(terms) => {
                for term in terms {
                    if !term.eval(item)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Expr::Not(inner) => Ok(!inner.eval(item)?),
            Expr::Match(m) => m.eval_at(item, 0),
        }
    }

    /// Unlike evaluation, validation visits every term: an error anywhere in the expression
    /// is reported, as go-bexpr reports it before filtering.
    fn validate(&self, schema: &Value) -> Result<(), FilterError> {
        match self {
            Expr::Or(terms) | Expr::And(terms) => {
                terms.iter().try_for_each(|term| term.validate(schema))
            }
            Expr::Not(inner) => inner.validate(schema),
            Expr::Match(m) => m.validate_at(schema, 0),
        }
    }
}

/// The JSON type of a value, as [`FilterError::NotNested`] names it.
fn kind_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A selector segment made only of digits indexes an array.
///
/// `None`: not an index (the segment names a field of every element); `Some(None)`: an index
/// too large for `usize`, which no array reaches, so it selects nothing.
fn array_index(segment: &str) -> Option<Option<usize>> {
    if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
        Some(segment.parse().ok())
    } else {
        None
    }
}

impl MatchExpr {
    /// The first `upto` segments, dotted, for error messages (the whole selector when there
    /// are fewer).
    fn selector_text(&self, upto: usize) -> String {
        self.selector
            .get(..upto)
            .unwrap_or(&self.selector)
            .join(".")
    }

    /// go-bexpr's error for an operator the selected field's type does not take.
    fn invalid_operator(&self) -> FilterError {
        FilterError::InvalidOperator {
            operator: self.op.name().to_string(),
            selector: self.selector.join("."),
        }
    }

    /// go-bexpr's error for a value the selected field's type cannot read; `reason` is
    /// strconv's own message (`parsing "abc": invalid syntax`).
    fn coerce_error(&self, reason: String) -> FilterError {
        FilterError::Coerce {
            value: self.value.clone(),
            selector: self.selector.join("."),
            reason,
        }
    }

    /// Walks the selector from segment `depth` down `value`, then applies the operator.
    fn eval_at(&self, value: &Value, depth: usize) -> Result<bool, FilterError> {
        let Some(segment) = self.selector.get(depth) else {
            return self.apply(value);
        };
        // A missing key or a null on the way answers as an absent value; an array is either
        // indexed or searched; anything else cannot hold fields.
        match value {
            Value::Object(map) => match map.get(segment) {
                Some(child) => self.eval_at(child, depth + 1),
                None => Ok(self.op.when_absent()),
            },
            Value::Null => Ok(self.op.when_absent()),
            Value::Array(items) => match array_index(segment) {
                Some(index) => match index.and_then(|i| items.get(i)) {
                    Some(child) => self.eval_at(child, depth + 1),
                    None => Ok(self.op.when_absent()),
                },
                None => {
                    // Any element: the whole operator, negation included, per element. The
                    // same segment is applied to each element (depth unchanged), so arrays of
                    // arrays flatten.
                    for item in items {
                        if self.eval_at(item, depth)? {
                            return Ok(true);
                        }
                    }
                    Ok(false)
                }
            },
            scalar => Err(FilterError::NotNested {
                selector: self.selector_text(depth),
                kind: kind_name(scalar).to_string(),
            }),
        }
    }

    /// Applies the operator to the selected value. A combination the table below does not list
    /// (`contains` on a number, `==` on an array) is an error, not `false`: the filter is wrong
    /// for that field, as go-bexpr says.
    fn apply(&self, value: &Value) -> Result<bool, FilterError> {
        if value.is_null() {
            return Ok(self.op.when_absent());
        }
        let raw = self.value.as_str();
        let positive = match (self.op.base(), value) {
            // Strings compare as text, exactly; numbers and booleans read the value in the
            // field's type first, which may fail.
            (Op::Equal, Value::String(s)) => s == raw,
            (Op::Equal, Value::Number(n)) => {
                number_equals(n, raw).map_err(|r| self.coerce_error(r))?
            }
            (Op::Equal, Value::Bool(b)) => {
                *b == parse_go_bool(raw).map_err(|r| self.coerce_error(r))?
            }
            // Substring; the empty string is in every string.
            (Op::In, Value::String(s)) => s.contains(raw),
            (Op::In, Value::Object(map)) => map.contains_key(raw),
            (Op::In, Value::Array(items)) => items.iter().any(|item| element_equals(item, raw)),
            (Op::IsEmpty, Value::String(s)) => s.is_empty(),
            (Op::IsEmpty, Value::Array(items)) => items.is_empty(),
            (Op::IsEmpty, Value::Object(map)) => map.is_empty(),
            // Unanchored, as Go's `MatchString`: `^` and `$` anchor when wanted. The regex is
            // always there for `matches` (compiled by the parser).
            (Op::Matches, Value::String(s)) => self.regex.as_ref().is_some_and(|re| re.is_match(s)),
            _ => return Err(self.invalid_operator()),
        };
        Ok(positive != self.op.negated())
    }

    /// Walks the selector down the schema as [`MatchExpr::eval_at`] walks data. Where the
    /// sample knows nothing (a `{}` map, `null`, `[]`), anything below is accepted, since
    /// data there can have any shape.
    fn validate_at(&self, schema: &Value, depth: usize) -> Result<(), FilterError> {
        let Some(segment) = self.selector.get(depth) else {
            return self.validate_operator(schema);
        };
        let unknown = || FilterError::InvalidSelector {
            selector: self.selector_text(depth + 1),
        };
        match schema {
            // A map: any key, and nothing is known below it.
            Value::Object(map) if map.is_empty() => Ok(()),
            Value::Object(map) => match map.get(segment) {
                Some(child) => self.validate_at(child, depth + 1),
                None => Err(unknown()),
            },
            // The first element stands for all of them; an index selects an element, any
            // other segment is looked up in each element (as evaluation does).
            Value::Array(items) => match items.first() {
                None => Ok(()),
                Some(element) if array_index(segment).is_some() => {
                    self.validate_at(element, depth + 1)
                }
                Some(element) => self.validate_at(element, depth),
            },
            Value::Null => Ok(()),
            _ => Err(unknown()),
        }
    }

    /// go-bexpr's operator table: strings take every operator (including `is empty`, as newer
    /// go-bexpr allows); numbers and booleans only `==` / `!=`; arrays `is empty` and, when
    /// their elements are scalars, `in`; maps `is empty` and `in` (on keys); objects with known
    /// fields none.
    fn validate_operator(&self, schema: &Value) -> Result<(), FilterError> {
        let base = self.op.base();
        let ok = match schema {
            // A `null` sample says nothing of the type, and strings take every operator.
            Value::Null | Value::String(_) => true,
            // The value is coerced now, against the sample's type, so a bad one is refused
            // before any data is seen (and whether or not data would reach this term).
            Value::Number(n) => {
                if base == Op::Equal {
                    coerce_number(n, &self.value).map_err(|r| self.coerce_error(r))?;
                }
                base == Op::Equal
            }
            Value::Bool(_) => {
                if base == Op::Equal {
                    parse_go_bool(&self.value).map_err(|r| self.coerce_error(r))?;
                }
                base == Op::Equal
            }
            // A selector that stops at an array (rather than walking into it) asks about the
            // array itself: its emptiness, or membership, which needs scalar elements.
            Value::Array(items) => match base {
                Op::IsEmpty => true,
                Op::In => match items.first() {
                    None | Some(Value::Null | Value::String(_)) => true,
                    Some(Value::Number(n)) => {
                        coerce_number(n, &self.value).map_err(|r| self.coerce_error(r))?;
                        true
                    }
                    Some(Value::Bool(_)) => {
                        parse_go_bool(&self.value).map_err(|r| self.coerce_error(r))?;
                        true
                    }
                    Some(_) => false,
                },
                _ => false,
            },
            Value::Object(map) => is_map_schema(map) && matches!(base, Op::IsEmpty | Op::In),
        };
        if ok {
            Ok(())
        } else {
            Err(self.invalid_operator())
        }
    }
}

/// The schema convention: an empty object stands for a map (`Meta`, `NodeMeta`), whose keys
/// are data, not fields; an object with fields is a struct.
fn is_map_schema(map: &Map<String, Value>) -> bool {
    map.is_empty()
}

/// Membership test for one array element: elements the value cannot be coerced to are skipped,
/// as go-bexpr does for mixed-type slices.
fn element_equals(element: &Value, raw: &str) -> bool {
    match element {
        Value::String(s) => s == raw,
        Value::Number(n) => number_equals(n, raw).unwrap_or(false),
        Value::Bool(b) => parse_go_bool(raw).is_ok_and(|v| v == *b),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Coercion, as Go's strconv reads values
// ---------------------------------------------------------------------------------------------

/// A value read as a number field's type. `i128` holds both Go readings of an integer, `int64`
/// and (above its range) `uint64`.
enum NumberValue {
    Int(i128),
    Float(f64),
}

/// Reads `raw` as the type of `field`: an integer for integral JSON numbers, a float otherwise.
/// So `Port == 80.0` is refused (Go cannot read `80.0` as an int), while `Ratio == 1` is fine.
fn coerce_number(field: &Number, raw: &str) -> Result<NumberValue, String> {
    if field.is_f64() {
        parse_go_float(raw).map(NumberValue::Float)
    } else {
        parse_go_int(raw).map(NumberValue::Int)
    }
}

/// `field == raw`, comparing in the field's type: integers exactly, floats as f64.
fn number_equals(field: &Number, raw: &str) -> Result<bool, String> {
    Ok(match coerce_number(field, raw)? {
        NumberValue::Float(f) => field.as_f64() == Some(f),
        NumberValue::Int(i) => {
            let actual = field
                .as_i64()
                .map(i128::from)
                .or_else(|| field.as_u64().map(i128::from));
            actual == Some(i)
        }
    })
}

/// `strconv.ParseInt(raw, 0, 64)` (or `ParseUint` for values above `i64::MAX`): optional sign,
/// `0x` / `0o` / `0b` / leading-`0` octal prefixes, `_` between digits.
fn parse_go_int(raw: &str) -> Result<i128, String> {
    let invalid = || format!("parsing {raw:?}: invalid syntax");
    let (negative, body) = match raw.as_bytes().first() {
        Some(b'-') => (true, &raw[1..]),
        Some(b'+') => (false, &raw[1..]),
        _ => (false, raw),
    };
    // Base 0: the prefix picks the base, in either case; a leading 0 alone means octal.
    let lower = body.to_ascii_lowercase();
    let (radix, digits, prefixed) = if let Some(rest) = lower.strip_prefix("0x") {
        (16, rest, true)
    } else if let Some(rest) = lower.strip_prefix("0o") {
        (8, rest, true)
    } else if let Some(rest) = lower.strip_prefix("0b") {
        (2, rest, true)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower.as_str(), false)
    } else {
        (10, lower.as_str(), false)
    };
    // Go's underscore rule: only between digits, or right after a base prefix (`0x_ff`).
    if digits.is_empty()
        || digits.contains("__")
        || digits.ends_with('_')
        || (!prefixed && digits.starts_with('_'))
    {
        return Err(invalid());
    }
    // With the rule checked, underscores are only separators.
    let cleaned: String = digits.chars().filter(|&c| c != '_').collect();
    if cleaned.is_empty() || !cleaned.chars().all(|c| c.is_digit(radix)) {
        return Err(invalid());
    }
    // Read unsigned and wide, so both `i64::MIN`'s magnitude and `u64::MAX` fit before the
    // range check below.
    let magnitude = u128::from_str_radix(&cleaned, radix)
        .map_err(|_| format!("parsing {raw:?}: value out of range"))?;
    let value = if negative {
        0i128.checked_sub_unsigned(magnitude)
    } else {
        i128::try_from(magnitude).ok()
    };
    // From `int64`'s minimum to `uint64`'s maximum: what `ParseInt` or, above its range,
    // `ParseUint` accepts.
    match value {
        Some(v) if v >= i128::from(i64::MIN) && v <= i128::from(u64::MAX) => Ok(v),
        _ => Err(format!("parsing {raw:?}: value out of range")),
    }
}

/// `strconv.ParseFloat(raw, 64)` for decimal forms, `Inf` and `NaN`. Go also reads hexadecimal
/// floats (`0x1p-2`), which are refused here.
fn parse_go_float(raw: &str) -> Result<f64, String> {
    raw.parse::<f64>()
        .map_err(|_| format!("parsing {raw:?}: invalid syntax"))
}

/// `strconv.ParseBool`: exactly these spellings, so `yes` or `on` are errors, as in Consul.
fn parse_go_bool(raw: &str) -> Result<bool, String> {
    match raw {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("parsing {raw:?}: invalid syntax")),
    }
}

// ---------------------------------------------------------------------------------------------
// Parser: a backtracking recursive descent that mirrors go-bexpr's PEG, reporting the farthest
// point it reached and what it expected there.
// ---------------------------------------------------------------------------------------------

/// Something the parser expected where it failed: a literal (`"=="`, shown quoted) or a class
/// of tokens (`selector`, `number`). `Ord` sorts the list in the error message, so it does not
/// depend on the order the alternatives were tried: literals first, then classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Expect {
    Lit(&'static str),
    Class(&'static str),
}

impl Expect {
    /// A literal quoted (`"=="`), a class as its name (`number`), as go-bexpr lists them.
    fn render(self) -> String {
        match self {
            Expect::Lit(s) => format!("{s:?}"),
            Expect::Class(s) => s.to_string(),
        }
    }
}

/// `Ok(None)`: this alternative does not match here (the position is restored);
/// `Err`: the input is definitely malformed.
type PResult<T> = Result<Option<T>, FilterError>;

/// One open parenthesis (or the whole expression) while [`Parser::expression`] runs.
struct Frame {
    /// Where its "(" is.
    open: usize,
    /// Nesting depth of its contents.
    depth: usize,
    /// Finished `and` chains.
    or_terms: Vec<Expr>,
    /// Operands of the `and` chain being read.
    and_terms: Vec<Expr>,
    /// Where each `not` before the operand being read starts.
    nots: Vec<usize>,
    /// Set while reading the operand after an `and` / `or`: which, and where the keyword's
    /// leading whitespace starts (to back off to if no operand follows).
    cont: Option<(Cont, usize)>,
}

impl Frame {
    /// A frame for a "(" at `open` whose contents sit `depth` levels deep.
    fn new(open: usize, depth: usize) -> Self {
        Frame {
            open,
            depth,
            or_terms: Vec::new(),
            and_terms: Vec::new(),
            nots: Vec::new(),
            cont: None,
        }
    }
}

/// Which keyword the operand being read follows.
#[derive(Clone, Copy)]
enum Cont {
    And,
    Or,
}

/// The step [`Parser::expression`] takes next. Each state is a point of the recursive grammar
/// (`Or := And ("or" And)*`, `And := Not ("and" Not)*`, `Not := "not" Not | "(" Or ")" | Match`)
/// made explicit, so nesting lives in the frame stack instead of the call stack.
enum State {
    /// Read an operand: `not`s, then "(" or a match expression.
    Operand,
    /// An operand attempt ended: parsed, or failed with the position restored.
    Got(Option<Expr>),
    /// After an operand: try `and`.
    TryAnd,
    /// After an `and` chain: try `or`.
    TryOr,
    /// The frame's expression is complete.
    Close,
}

/// One term stays itself; several become an `And` / `Or` node. Keeps the tree as shallow as
/// the expression: `(A == 1)` is a match, not an `Or` of an `And` of a match.
fn combine(mut terms: Vec<Expr>, node: fn(Vec<Expr>) -> Expr) -> Expr {
    if terms.len() == 1
        && let Some(only) = terms.pop()
    {
        return only;
    }
    node(terms)
}

/// The parser's position and its error reporting. A PEG parser tries alternatives and backs
/// off; the useful error is at the farthest point any alternative reached, with everything
/// that would have been accepted there (as go-bexpr's generated parser reports it).
struct Parser<'a> {
    src: &'a str,
    /// Byte offset of the next character.
    pos: usize,
    /// The farthest offset where a token was expected and not found.
    fail_pos: usize,
    /// What was expected at `fail_pos`, each once.
    expected: Vec<Expect>,
    /// `matches` operators seen so far, across the whole expression: the count, and so
    /// [`MAX_REGEXES`], does not depend on where they sit.
    regexes: usize,
}

/// The grammar's whitespace: ASCII only, as go-bexpr's.
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Self {
        Parser {
            src,
            pos: 0,
            fail_pos: 0,
            expected: Vec::new(),
            regexes: 0,
        }
    }

    /// The next byte; the grammar's tokens are all ASCII, so bytes are enough to recognise them
    /// (non-ASCII text only appears inside strings, read as `str`).
    fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<u8> {
        self.src.as_bytes().get(self.pos + ahead).copied()
    }

    /// Records that `what` was expected at the current position: a farther position replaces
    /// the list, the same one adds to it, a nearer one is ignored.
    fn expect(&mut self, what: Expect) {
        if self.pos > self.fail_pos {
            self.fail_pos = self.pos;
            self.expected.clear();
        }
        if self.pos == self.fail_pos && !self.expected.contains(&what) {
            self.expected.push(what);
        }
    }

    /// 1-based line and column of a byte offset; columns count characters, as an editor shows
    /// them.
    fn line_column(&self, offset: usize) -> (usize, usize) {
        let before = self.src.get(..offset).unwrap_or(self.src);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
        (line, column)
    }

    /// A syntax error at `offset` with a message of its own (a definite error, not a failed
    /// alternative).
    fn error_at(&self, offset: usize, message: impl Into<String>) -> FilterError {
        let (line, column) = self.line_column(offset);
        FilterError::Syntax {
            line,
            column,
            offset,
            message: message.into(),
        }
    }

    /// The nesting limit's error, at the `(` or `not` that went one level too deep.
    fn too_deep(&self, offset: usize) -> FilterError {
        let (line, column) = self.line_column(offset);
        FilterError::TooDeep {
            line,
            column,
            offset,
            max: MAX_NESTING,
        }
    }

    /// What was expected at the farthest failure, sorted, as the error message lists it.
    fn expected_list(&self) -> String {
        let mut expected = self.expected.clone();
        expected.sort();
        expected
            .into_iter()
            .map(Expect::render)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The error when no alternative matched: at the farthest failure, go-bexpr's wording.
    fn no_match(&self) -> FilterError {
        let message = if self.expected.is_empty() {
            "no match found".to_string()
        } else {
            format!("no match found, expected: {}", self.expected_list())
        };
        self.error_at(self.fail_pos, message)
    }

    /// `_`: one or more whitespace characters.
    fn ws(&mut self) -> bool {
        let start = self.pos;
        self.opt_ws();
        if self.pos == start {
            self.expect(Expect::Class("whitespace"));
            false
        } else {
            true
        }
    }

    /// `_?`
    fn opt_ws(&mut self) {
        while self.peek().is_some_and(is_ws) {
            self.pos += 1;
        }
    }

    /// Consumes `text` if it comes next; otherwise records it as expected.
    fn lit(&mut self, text: &'static str) -> bool {
        let found = self
            .src
            .as_bytes()
            .get(self.pos..)
            .is_some_and(|rest| rest.starts_with(text.as_bytes()));
        if found {
            self.pos += text.len();
        } else {
            self.expect(Expect::Lit(text));
        }
        found
    }

    /// Matches a sequence of keywords separated by mandatory whitespace, with mandatory
    /// whitespace before (`lead`) and after (`trail`); restores the position on failure.
    ///
    /// The mandatory whitespace is what keeps keywords apart from names: `notx` is a
    /// selector, and `not(A == 1)` is not a negation (go-bexpr refuses it too).
    fn keywords(&mut self, lead: bool, words: &[&'static str], trail: bool) -> bool {
        let start = self.pos;
        let ok = (!lead || self.ws())
            && words
                .iter()
                .enumerate()
                .all(|(i, w)| (i == 0 || self.ws()) && self.lit(w))
            && (!trail || self.ws());
        if !ok {
            self.pos = start;
        }
        ok
    }

    /// `Or`, parsed without recursion: each open parenthesis is a [`Frame`] on an explicit
    /// stack, so nesting costs heap, not call stack. The states mirror the PEG's alternatives
    /// and backtracking exactly (see [`State`]).
    fn expression(&mut self) -> PResult<Expr> {
        // The bottom frame is the whole expression; each "(" pushes one, each ")" pops it.
        let mut stack = vec![Frame::new(self.pos, 0)];
        let mut state = State::Operand;
        loop {
            // Every step but opening and closing a parenthesis works on the innermost frame.
            let Some(top) = stack.last_mut() else {
                return Ok(None);
            };
            state = match state {
                State::Operand => {
                    // "not" _ Not: each `not` is a level of nesting, like a parenthesis.
                    loop {
                        let start = self.pos;
                        if !self.keywords(false, &["not"], true) {
                            break;
                        }
                        if top.depth + top.nots.len() + 1 > MAX_NESTING {
                            return Err(self.too_deep(start));
                        }
                        top.nots.push(start);
                    }
                    // "(" _? Or _? ")"
                    let open = self.pos;
                    if self.lit("(") {
                        // Depth counts every enclosing parenthesis and every pending `not`.
                        let depth = top.depth + top.nots.len() + 1;
                        if depth > MAX_NESTING {
                            return Err(self.too_deep(open));
                        }
                        self.opt_ws();
                        stack.push(Frame::new(open, depth));
                        State::Operand
                    } else {
                        // Not a parenthesis: the operand must be a match expression.
                        State::Got(self.match_expr()?)
                    }
                }
                State::Got(Some(operand)) => {
                    let wrapped = if top.nots.len() % 2 == 1 {
                        Expr::Not(Box::new(operand))
                    } else {
                        // `not not x` is `x`, as go-bexpr simplifies it.
                        operand
                    };
                    top.nots.clear();
                    top.and_terms.push(wrapped);
                    top.cont = None;
                    State::TryAnd
                }
                State::Got(None) => {
                    if let Some(start) = top.nots.pop() {
                        // The last `not` may itself be a field name: retry from it.
                        self.pos = start;
                        State::Got(self.match_expr()?)
                    } else if let Some((cont, restore)) = top.cont.take() {
                        // `x and <nothing>`: the chain ends before the keyword.
                        self.pos = restore;
                        match cont {
                            Cont::And => State::TryOr,
                            Cont::Or => State::Close,
                        }
                    } else if stack.len() > 1 {
                        // Nothing inside "(": this parenthesis is not an operand after all.
                        let open = stack.pop().map_or(self.pos, |frame| frame.open);
                        self.pos = open;
                        State::Got(None)
                    } else {
                        return Ok(None);
                    }
                }
                // `and` binds tighter: an operand first joins the current `and` chain, and the
                // chain joins the `or` list only when no `and` follows.
                State::TryAnd => {
                    let save = self.pos;
                    if self.keywords(true, &["and"], true) {
                        top.cont = Some((Cont::And, save));
                        State::Operand
                    } else {
                        State::TryOr
                    }
                }
                State::TryOr => {
                    let terms = std::mem::take(&mut top.and_terms);
                    top.or_terms.push(combine(terms, Expr::And));
                    let save = self.pos;
                    if self.keywords(true, &["or"], true) {
                        top.cont = Some((Cont::Or, save));
                        State::Operand
                    } else {
                        State::Close
                    }
                }
                State::Close => {
                    let terms = std::mem::take(&mut top.or_terms);
                    let expr = combine(terms, Expr::Or);
                    stack.pop();
                    // The outermost frame has no parenthesis to close; the caller checks that
                    // the input ends here.
                    if stack.is_empty() {
                        return Ok(Some(expr));
                    }
                    self.opt_ws();
                    if !self.lit(")") {
                        let message = if self.fail_pos == self.pos {
                            format!("Unmatched parentheses, expected: {}", self.expected_list())
                        } else {
                            "Unmatched parentheses".to_string()
                        };
                        return Err(self.error_at(self.pos, message));
                    }
                    // The parenthesised expression is an operand of the enclosing frame.
                    State::Got(Some(expr))
                }
            };
        }
    }

    /// `Match`: the grammar's three forms, tried in its order, backing off to `start` between
    /// them. `Ok(None)` if none applies here.
    fn match_expr(&mut self) -> PResult<Expr> {
        let start = self.pos;
        // Selector op Value
        if let Some(selector) = self.selector()? {
            let after_selector = self.pos;
            if let Some(op) = self.value_operator()
                && let Some(value) = self.value()?
            {
                return self.build(start, selector, op, value).map(Some);
            }
            // Selector is [not] empty
            self.pos = after_selector;
            if let Some(op) = self.empty_operator() {
                return self.build(start, selector, op, String::new()).map(Some);
            }
            self.pos = start;
        }
        // Value [not] in Selector
        if let Some(value) = self.value()?
            && let Some(op) = self.in_operator()
        {
            let selector_pos = self.pos;
            if let Some(selector) = self.selector()? {
                return self.build(start, selector, op, value).map(Some);
            }
            // After `in`, nothing else can follow: a definite error, go-bexpr's message.
            return Err(self.error_at(selector_pos, "Invalid selector"));
        }
        self.pos = start;
        Ok(None)
    }

    /// Makes the match node, compiling the regex of `matches` now (bounded in number and size),
    /// so a bad pattern is a parse error and evaluation never compiles anything.
    fn build(
        &mut self,
        start: usize,
        selector: Vec<String>,
        op: Op,
        value: String,
    ) -> Result<Expr, FilterError> {
        let regex = if op.base() == Op::Matches {
            // Counted before compiling, so the expression that would compile one too many
            // compiles none beyond the limit.
            self.regexes += 1;
            if self.regexes > MAX_REGEXES {
                let (line, column) = self.line_column(start);
                return Err(FilterError::TooManyRegexes {
                    line,
                    column,
                    offset: start,
                    max: MAX_REGEXES,
                });
            }
            let compiled = RegexBuilder::new(&value)
                .size_limit(REGEX_SIZE_LIMIT)
                .dfa_size_limit(REGEX_DFA_SIZE_LIMIT)
                .build();
            match compiled {
                Ok(re) => Some(re),
                Err(e) => {
                    return Err(FilterError::Regex {
                        pattern: value,
                        reason: e.to_string(),
                    });
                }
            }
        } else {
            None
        };
        Ok(Expr::Match(Box::new(MatchExpr {
            selector,
            op,
            value,
            regex,
        })))
    }

    /// An operator that takes a value after it. Symbols need no whitespace around them
    /// (`A==1`), words do (see [`Parser::keywords`]).
    fn value_operator(&mut self) -> Option<Op> {
        let start = self.pos;
        for (text, op) in [("==", Op::Equal), ("!=", Op::NotEqual)] {
            self.opt_ws();
            if self.lit(text) {
                self.opt_ws();
                return Some(op);
            }
            self.pos = start;
        }
        let table: [(&[&'static str], Op); 4] = [
            (&["contains"], Op::In),
            (&["not", "contains"], Op::NotIn),
            (&["matches"], Op::Matches),
            (&["not", "matches"], Op::NotMatches),
        ];
        table
            .into_iter()
            .find(|(words, _)| self.keywords(true, words, true))
            .map(|(_, op)| op)
    }

    /// `is empty` / `is not empty`: the end of a match, so no whitespace is required after.
    fn empty_operator(&mut self) -> Option<Op> {
        let table: [(&[&'static str], Op); 2] = [
            (&["is", "empty"], Op::IsEmpty),
            (&["is", "not", "empty"], Op::IsNotEmpty),
        ];
        table
            .into_iter()
            .find(|(words, _)| self.keywords(true, words, false))
            .map(|(_, op)| op)
    }

    /// `in` / `not in`, between a value and a selector.
    fn in_operator(&mut self) -> Option<Op> {
        let table: [(&[&'static str], Op); 2] = [(&["in"], Op::In), (&["not", "in"], Op::NotIn)];
        table
            .into_iter()
            .find(|(words, _)| self.keywords(true, words, true))
            .map(|(_, op)| op)
    }

    /// `Ident`: an ASCII letter, then letters, digits and `_`. Field names outside this (with
    /// `-` or spaces, common in meta keys) go in brackets: `Meta["rack-id"]`.
    fn identifier(&mut self) -> Option<String> {
        let start = self.pos;
        if !self.peek().is_some_and(|b| b.is_ascii_alphabetic()) {
            self.expect(Expect::Class("selector"));
            return None;
        }
        self.pos += 1;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            self.pos += 1;
        }
        self.src.get(start..self.pos).map(str::to_string)
    }

    /// `Selector`: an identifier, then `.name`, `.N` (an array index) or `["key"]` segments.
    fn selector(&mut self) -> PResult<Vec<String>> {
        let Some(first) = self.identifier() else {
            return Ok(None);
        };
        let mut path = vec![first];
        loop {
            match self.peek() {
                Some(b'.') => {
                    let dot = self.pos;
                    self.pos += 1;
                    if let Some(name) = self.identifier() {
                        path.push(name);
                        continue;
                    }
                    // `.0`: an array index, kept as its digits (see `array_index`).
                    let digits_start = self.pos;
                    while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                        self.pos += 1;
                    }
                    if self.pos > digits_start {
                        path.push(
                            self.src
                                .get(digits_start..self.pos)
                                .unwrap_or("")
                                .to_string(),
                        );
                        continue;
                    }
                    // A dot followed by neither: not part of the selector; what follows fails
                    // wherever the dot is not expected.
                    self.pos = dot;
                    break;
                }
                // Once "[" is read, only a string key and "]" can follow: definite errors.
                Some(b'[') => {
                    self.pos += 1;
                    self.opt_ws();
                    let key_pos = self.pos;
                    let Some(key) = self.string_literal()? else {
                        return Err(self.error_at(key_pos, "Invalid index"));
                    };
                    self.opt_ws();
                    if !self.lit("]") {
                        return Err(self.error_at(self.pos, "Unclosed index expression"));
                    }
                    path.push(key);
                }
                _ => {
                    self.expect(Expect::Lit("."));
                    self.expect(Expect::Lit("["));
                    break;
                }
            }
        }
        Ok(Some(path))
    }

    /// `Value`: a bare word (read as a selector and standing for its dotted text, so `== web`
    /// and `== "web"` are the same), a number, or a string. Numbers and strings stay text;
    /// their type is settled against the field.
    fn value(&mut self) -> PResult<String> {
        if let Some(path) = self.selector()? {
            return Ok(Some(path.join(".")));
        }
        if let Some(number) = self.number()? {
            return Ok(Some(number));
        }
        self.string_literal()
    }

    /// `Number`: no leading zeros, no exponent, no leading `+`, as go-bexpr's grammar has it.
    /// Written in quotes, a value can take any form the field's type reads (`"0x50"`).
    fn number(&mut self) -> PResult<String> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        // A lone `-` is not a number: the position goes back for the other alternatives.
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                    self.pos += 1;
                }
            }
            _ => {
                self.pos = start;
                self.expect(Expect::Class("number"));
                return Ok(None);
            }
        }
        // The dot belongs to the number only with a digit after it; otherwise it is left, and
        // the delimiter check below refuses `1.`.
        if self.peek() == Some(b'.') && self.peek_at(1).is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
            while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                self.pos += 1;
            }
        }
        // A number must end at a delimiter: `5abc` or `007` is one bad literal, not a number
        // followed by something else.
        match self.peek() {
            None | Some(b')') => {}
            Some(b) if is_ws(b) => {}
            Some(_) => return Err(self.error_at(start, "Invalid number literal")),
        }
        Ok(self.src.get(start..self.pos).map(str::to_string))
    }

    /// `String`: a raw string in backquotes (no escapes, as in Go) or a double-quoted one.
    fn string_literal(&mut self) -> PResult<String> {
        let start = self.pos;
        match self.peek() {
            Some(b'`') => {
                let body_start = start + 1;
                let src: &'a str = self.src;
                let rest = src.get(body_start..).unwrap_or("");
                let Some(len) = rest.find('`') else {
                    return Err(self.error_at(start, "Unterminated string literal"));
                };
                let body = rest.get(..len).unwrap_or("");
                self.pos = body_start + len + 1;
                // Go drops carriage returns from raw strings.
                Ok(Some(body.chars().filter(|&c| c != '\r').collect()))
            }
            Some(b'"') => self.quoted_string(start).map(Some),
            _ => {
                self.expect(Expect::Class("string"));
                Ok(None)
            }
        }
    }

    /// A double-quoted string with Go's escapes (`\n`, `\t`, `\\`, `\"`, `\x41`, `\101`,
    /// `\u00e9`, `\U0001F600`, ...).
    ///
    /// Built as bytes, because `\x` and octal escapes are bytes (`"\xc3\xa9"` is `é`, as in
    /// Go); the result must still be valid UTF-8, since it is compared with JSON text.
    fn quoted_string(&mut self, start: usize) -> Result<String, FilterError> {
        let body_start = start + 1;
        let src: &'a str = self.src;
        let body = src.get(body_start..).unwrap_or("");
        let mut out: Vec<u8> = Vec::new();
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos = body_start + i + 1;
                    return String::from_utf8(out).map_err(|_| {
                        self.error_at(start, "Invalid string literal: not valid UTF-8")
                    });
                }
                // A Go interpreted string cannot span lines.
                '\n' => {
                    return Err(
                        self.error_at(body_start + i, "Invalid string literal: newline in string")
                    );
                }
                '\\' => {
                    let bad = || {
                        self.error_at(body_start + i, "Invalid escape sequence in string literal")
                    };
                    // A backslash at the very end: the string never closes.
                    let Some((_, e)) = chars.next() else {
                        break;
                    };
                    let simple = match e {
                        'a' => Some(0x07u8),
                        'b' => Some(0x08),
                        'f' => Some(0x0c),
                        'n' => Some(b'\n'),
                        'r' => Some(b'\r'),
                        't' => Some(b'\t'),
                        'v' => Some(0x0b),
                        '\\' => Some(b'\\'),
                        '"' => Some(b'"'),
                        _ => None,
                    };
                    if let Some(byte) = simple {
                        out.push(byte);
                        continue;
                    }
                    // Digits still to read after the escape letter; an octal escape is three
                    // digits, the first being the one already read.
                    let (count, radix) = match e {
                        'x' => (2, 16),
                        'u' => (4, 16),
                        'U' => (8, 16),
                        '0'..='7' => (2, 8),
                        _ => return Err(bad()),
                    };
                    let mut digits = String::new();
                    if radix == 8 {
                        digits.push(e);
                    }
                    for _ in 0..count {
                        match chars.next() {
                            Some((_, d)) if d.is_digit(radix) => digits.push(d),
                            _ => return Err(bad()),
                        }
                    }
                    let code = u32::from_str_radix(&digits, radix).map_err(|_| bad())?;
                    // `\u` and `\U` name a code point (surrogates and values past U+10FFFF are
                    // refused, as Go refuses them); `\x` and octal name a byte (octal above
                    // `\377` is refused, as in Go).
                    if matches!(e, 'u' | 'U') {
                        let ch = char::from_u32(code).ok_or_else(bad)?;
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    } else {
                        out.push(u8::try_from(code).map_err(|_| bad())?);
                    }
                }
                other => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(other.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        Err(self.error_at(start, "Unterminated string literal"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// A `/v1/catalog/service` entry as Consul writes it: strings, numbers (integral and not),
    /// booleans, tags, meta maps with keys that need brackets, and a `null` map.
    fn catalog_service() -> Value {
        json!({
            "ID": "b4f64e8c",
            "Node": "node-1",
            "Address": "198.18.0.1",
            "Datacenter": "dc1",
            "TaggedAddresses": null,
            "NodeMeta": {"os": "linux", "arch": "arm", "rack-id": "r1"},
            "ServiceKind": "",
            "ServiceID": "web-1",
            "ServiceName": "web",
            "ServiceTags": ["primary", "v1", "http"],
            "ServiceAddress": "",
            "ServiceWeights": {"Passing": 1, "Warning": 1},
            "ServiceMeta": {"version": "1.2", "some-key": "x", "some key": "y"},
            "ServicePort": 8080,
            "ServiceEnableTagOverride": false,
            "ServiceProxy": {},
            "CreateIndex": 30,
            "ModifyIndex": 31,
            "Ratio": 0.5
        })
    }

    /// The schema of [`catalog_service`]: maps as `{}`, the tag list as one sample string.
    fn catalog_schema() -> Value {
        json!({
            "ID": "", "Node": "", "Address": "", "Datacenter": "",
            "TaggedAddresses": {}, "NodeMeta": {}, "ServiceKind": "", "ServiceID": "",
            "ServiceName": "", "ServiceTags": [""], "ServiceAddress": "",
            "ServiceWeights": {"Passing": 0, "Warning": 0}, "ServiceMeta": {},
            "ServicePort": 0, "ServiceEnableTagOverride": false, "ServiceProxy": {},
            "CreateIndex": 0, "ModifyIndex": 0, "Ratio": 0.5
        })
    }

    /// A `/v1/health/service` entry whose checks have the given statuses: nested objects and an
    /// array of objects, the shape the "any element" rule is about.
    fn service_entry(statuses: &[&str]) -> Value {
        let checks: Vec<Value> = statuses
            .iter()
            .enumerate()
            .map(|(i, s)| json!({"CheckID": format!("c{i}"), "Status": s, "ServiceTags": ["t"]}))
            .collect();
        json!({
            "Node": {"Node": "n1", "Meta": {"env": "prod"}},
            "Service": {"Service": "web", "Tags": ["primary"], "Meta": {"version": "2"}, "Port": 80,
                        "EnableTagOverride": true},
            "Checks": checks
        })
    }

    /// The schema of [`service_entry`]: the check list holds one sample check.
    fn entry_schema() -> Value {
        json!({
            "Node": {"Node": "", "Meta": {}},
            "Service": {"Service": "", "Tags": [""], "Meta": {}, "Port": 0, "EnableTagOverride": false},
            "Checks": [{"CheckID": "", "Status": "", "ServiceTags": [""]}]
        })
    }

    /// Parses and evaluates, panicking (with the expression) on any error.
    fn eval(expr: &str, item: &Value) -> bool {
        match Filter::parse(expr) {
            Ok(f) => match f.matches(item) {
                Ok(b) => b,
                Err(e) => panic!("{expr:?} failed to evaluate: {e}"),
            },
            Err(e) => panic!("{expr:?} failed to parse: {e}"),
        }
    }

    /// An expression that parses but fails on `item`'s types.
    fn eval_err(expr: &str, item: &Value) -> FilterError {
        match Filter::parse(expr).map(|f| f.matches(item)) {
            Ok(Err(e)) => e,
            other => panic!("{expr:?} should fail to evaluate, got {other:?}"),
        }
    }

    /// An expression that does not parse.
    fn parse_err(expr: &str) -> FilterError {
        match Filter::parse(expr) {
            Err(e) => e,
            Ok(f) => panic!("{expr:?} should not parse, got {f:?}"),
        }
    }

    /// Parses (which must succeed) and validates against `schema`.
    fn validate(expr: &str, schema: &Value) -> Result<(), FilterError> {
        match Filter::parse(expr) {
            Ok(f) => f.validate(schema),
            Err(e) => panic!("{expr:?} failed to parse: {e}"),
        }
    }

    /// Strings compare exactly (case included) whatever the value's quoting, and selectors reach
    /// into maps by dot or by bracket.
    #[test]
    fn equality_on_strings() {
        let s = catalog_service();
        assert!(eval(r#"ServiceName == "web""#, &s));
        assert!(eval("ServiceName == web", &s));
        assert!(eval("ServiceName==web", &s));
        assert!(eval("ServiceName == `web`", &s));
        // Case matters: no folding.
        assert!(!eval(r#"ServiceName == "Web""#, &s));
        assert!(eval(r#"ServiceName != "db""#, &s));
        assert!(!eval("ServiceName != web", &s));
        assert!(eval(r#"ServiceKind == """#, &s));
        assert!(eval("NodeMeta.os == linux", &s));
        assert!(eval(r#"NodeMeta["rack-id"] == "r1""#, &s));
        assert!(eval(r#"ServiceMeta[ "some key" ] == y"#, &s));
        assert!(eval(r#"ServiceMeta.version == "1.2""#, &s));
        // A bare selector as a value stands for its dotted text.
        assert!(eval("ServiceMeta.version == 1.2", &s));
        assert!(eval("ServiceTags contains v1", &s));
    }

    /// Go's string syntax: escapes in double quotes, none in backquotes, and every malformed
    /// escape or unterminated string a syntax error.
    #[test]
    fn quoting_and_escapes() {
        let item = json!({"S": "a\"b\\c\nd\té", "R": "x\\ny", "Q": "'"});
        assert!(eval(r#"S == "a\"b\\c\nd\té""#, &item));
        assert!(eval(r#"S == "a\x22b\134c\u000ad\t\u00e9""#, &item));
        assert!(eval(r#"S == "a\"b\\c\nd\t\U000000e9""#, &item));
        assert!(eval(r"R == `x\ny`", &item));
        assert!(eval(r#"Q == "'""#, &item));
        assert!(eval("Q == `'`", &item));
        for bad in [
            // No such escape.
            r#"S == "\q""#,
            // Too few hex digits.
            r#"S == "\x4""#,
            // Octal above 255.
            r#"S == "\400""#,
            // A surrogate is not a code point.
            r#"S == "\ud800""#,
            // A lone byte that is not UTF-8.
            r#"S == "\xff""#,
            // A newline inside double quotes.
            "S == \"a\nb\"",
            // Unterminated, plain, raw, and with its closing quote escaped.
            r#"S == "abc"#,
            "S == `abc",
            r#"S == "abc\"#,
        ] {
            assert!(
                matches!(parse_err(bad), FilterError::Syntax { .. }),
                "{bad:?}"
            );
        }
    }

    /// Values take the field's type as Go's strconv reads it (bases, underscores, signs, float
    /// forms, `ParseBool`'s spellings); what it cannot read is a coercion error naming value
    /// and selector.
    #[test]
    fn numbers_and_bools_are_coerced() {
        let s = catalog_service();
        assert!(eval("ServicePort == 8080", &s));
        assert!(eval(r#"ServicePort == "8080""#, &s));
        assert!(eval(r#"ServicePort == "0x1F90""#, &s));
        assert!(eval(r#"ServicePort == "8_080""#, &s));
        assert!(eval(r#"ServicePort == "+8080""#, &s));
        assert!(eval("ServicePort != 80", &s));
        assert!(eval("ServiceWeights.Passing == 1", &s));
        assert!(eval("Ratio == 0.5", &s));
        assert!(eval(r#"Ratio == "5e-1""#, &s));
        assert!(eval("Ratio != 1", &s));
        assert!(eval("ServiceEnableTagOverride == false", &s));
        assert!(eval(r#"ServiceEnableTagOverride == "False""#, &s));
        assert!(eval("ServiceEnableTagOverride == 0", &s));
        assert!(eval("ServiceEnableTagOverride != true", &s));
        assert!(eval("Neg == -3", &json!({"Neg": -3})));
        assert!(eval(
            "Big == 18446744073709551615",
            &json!({"Big": u64::MAX})
        ));
        for bad in [
            "ServicePort == abc",
            // An integer field does not take a float, even a whole one.
            "ServicePort == 8080.0",
            // Underscores only between digits.
            r#"ServicePort == "8__080""#,
            r#"ServicePort == "_8080""#,
            // Beyond `uint64`.
            "ServicePort != 99999999999999999999999",
            // Not one of `ParseBool`'s spellings.
            "ServiceEnableTagOverride == yes",
            "Ratio == half",
        ] {
            let err = eval_err(bad, &s);
            assert!(matches!(err, FilterError::Coerce { .. }), "{bad:?}: {err}");
        }
        let err = eval_err("ServicePort == abc", &s);
        assert_eq!(
            err.to_string(),
            r#"Failed to coerce value "abc" for selector "ServicePort": parsing "abc": invalid syntax"#
        );
    }

    /// `contains` and `in` are membership for arrays, key membership for maps and substring
    /// for strings, with elements coerced one by one.
    #[test]
    fn contains_and_in() {
        let s = catalog_service();
        // Arrays: membership.
        assert!(eval("ServiceTags contains primary", &s));
        assert!(eval(r#""primary" in ServiceTags"#, &s));
        assert!(!eval("ServiceTags contains prim", &s));
        assert!(eval("ServiceTags not contains secondary", &s));
        assert!(eval(r#""secondary" not in ServiceTags"#, &s));
        assert!(!eval("primary not in ServiceTags", &s));
        // Maps: key set.
        assert!(eval("NodeMeta contains os", &s));
        assert!(eval(r#""rack-id" in NodeMeta"#, &s));
        assert!(!eval("NodeMeta contains linux", &s));
        assert!(eval("linux not in NodeMeta", &s));
        // Strings: substring.
        assert!(eval("ServiceName contains we", &s));
        assert!(eval(r#""eb" in ServiceName"#, &s));
        // The empty string is in every string, as with Go's `strings.Contains`.
        assert!(eval(r#""" in ServiceName"#, &s));
        assert!(eval("ServiceName not contains db", &s));
        // Numeric and mixed arrays coerce per element; uncoercible elements are skipped.
        let item = json!({"Ports": [80, 443], "Mixed": ["a", 1, true, null, {"k": 1}]});
        assert!(eval("Ports contains 443", &item));
        assert!(eval(r#""80" in Ports"#, &item));
        assert!(!eval("Ports contains http", &item));
        assert!(eval("Mixed contains 1", &item));
        assert!(eval("Mixed contains a", &item));
        assert!(eval("Mixed contains true", &item));
        assert!(!eval("Mixed contains k", &item));
        // Not for numbers or booleans.
        assert!(matches!(
            eval_err("ServicePort contains 8", &s),
            FilterError::InvalidOperator { .. }
        ));
    }

    /// `matches` is an unanchored regex search on strings only; a bad pattern fails the parse.
    #[test]
    fn regex_matching() {
        let s = catalog_service();
        assert!(eval(r#"ServiceName matches "^w.b$""#, &s));
        assert!(eval(r#"ServiceName matches "e""#, &s));
        assert!(!eval(r#"ServiceName matches "^eb""#, &s));
        assert!(eval(r#"ServiceName not matches "^db""#, &s));
        assert!(eval(r"NodeMeta.os matches `^(linux|darwin)$`", &s));
        assert!(eval(
            r#"ServiceMeta.version matches "^[0-9]+\\.[0-9]+$""#,
            &s
        ));
        assert!(matches!(
            parse_err(r#"ServiceName matches "(""#),
            FilterError::Regex { .. }
        ));
        assert!(matches!(
            eval_err("ServicePort matches `80`", &s),
            FilterError::InvalidOperator { .. }
        ));
        // The compiled regex travels with clones.
        let f = Filter::parse(r#"ServiceName matches "^w""#).expect("parses");
        let g = f.clone();
        drop(f);
        assert_eq!(g.matches(&s), Ok(true));
    }

    /// `is empty` holds for empty strings, arrays and maps, `null` and missing fields; numbers
    /// have no emptiness.
    #[test]
    fn emptiness() {
        let item = json!({
            "Tags": [], "Full": ["a"], "Meta": {}, "FullMeta": {"a": "b"},
            "Str": "", "FullStr": "x", "Null": null, "Port": 0
        });
        assert!(eval("Tags is empty", &item));
        assert!(!eval("Tags is not empty", &item));
        assert!(eval("Full is not empty", &item));
        assert!(eval("Meta is empty", &item));
        assert!(eval("FullMeta is not empty", &item));
        assert!(eval("Str is empty", &item));
        assert!(eval("FullStr is not empty", &item));
        assert!(eval("Null is empty", &item));
        assert!(eval("Missing is empty", &item));
        assert!(!eval("Missing is not empty", &item));
        assert!(eval("FullMeta.absent is empty", &item));
        assert!(eval("Tags   is\tnot\n empty or Str is empty", &item));
        assert!(matches!(
            eval_err("Port is empty", &item),
            FilterError::InvalidOperator { .. }
        ));
    }

    /// go-bexpr's missing-key answers: every positive operator false, every negated one true,
    /// whatever the value; only going below a scalar is an error.
    #[test]
    fn missing_keys_and_nulls() {
        let s = catalog_service();
        for (expr, expected) in [
            ("ServiceMeta.absent == x", false),
            ("ServiceMeta.absent != x", true),
            ("ServiceMeta.absent contains x", false),
            ("ServiceMeta.absent not contains x", true),
            ("x in ServiceMeta.absent", false),
            ("x not in ServiceMeta.absent", true),
            ("ServiceMeta.absent matches `.*`", false),
            ("ServiceMeta.absent not matches `.*`", true),
            ("ServiceMeta.absent is empty", true),
            ("ServiceMeta.absent is not empty", false),
            ("TaggedAddresses.lan == x", false),
            ("TaggedAddresses.lan != x", true),
            ("TaggedAddresses is empty", true),
            ("NoSuchField == 8080", false),
        ] {
            assert_eq!(eval(expr, &s), expected, "{expr}");
        }
        // Going below a scalar is an error, as in go-bexpr.
        let err = eval_err("ServiceName.foo == x", &s);
        assert_eq!(
            err,
            FilterError::NotNested {
                selector: "ServiceName".into(),
                kind: "string".into()
            }
        );
    }

    /// The "any element" rule, with negated operators per element, which makes `not X != v`
    /// mean "every element is v" (true for no elements); numeric segments index instead.
    #[test]
    fn arrays_of_objects_match_any_element() {
        let all_passing = service_entry(&["passing", "passing"]);
        let one_critical = service_entry(&["passing", "critical"]);
        let no_checks = service_entry(&[]);
        assert!(eval("Checks.Status == passing", &one_critical));
        assert!(eval("Checks.Status == critical", &one_critical));
        assert!(!eval("Checks.Status == warning", &one_critical));
        // `!=` is applied per element too: "some check is not passing".
        assert!(eval("Checks.Status != passing", &one_critical));
        assert!(!eval("Checks.Status != passing", &all_passing));
        // Consul's own "all checks passing" idiom.
        assert!(eval("not Checks.Status != passing", &all_passing));
        assert!(!eval("not Checks.Status != passing", &one_critical));
        assert!(eval("not Checks.Status != passing", &no_checks));
        // Nothing matches inside an empty array, not even a negation.
        assert!(!eval("Checks.Status == passing", &no_checks));
        assert!(!eval("Checks.Status != passing", &no_checks));
        assert!(eval("Checks is empty", &no_checks));
        assert!(eval("Checks is not empty", &one_critical));
        assert!(eval("Checks.ServiceTags contains t", &one_critical));
        assert!(eval(r#"Checks.CheckID matches "^c1$""#, &one_critical));
        // Numeric segments index.
        assert!(eval("Checks.1.Status == critical", &one_critical));
        assert!(!eval("Checks.0.Status == critical", &one_critical));
        assert!(!eval("Checks.7.Status == critical", &one_critical));
        assert!(eval("Checks.7.Status != critical", &one_critical));
        assert!(eval(r#"Checks["1"].Status == critical"#, &one_critical));
        // Nested objects.
        assert!(eval("Service.Tags contains primary", &all_passing));
        assert!(eval("Service.Meta.version == 2", &all_passing));
        assert!(eval("Service.Port == 80", &all_passing));
        assert!(eval("Service.EnableTagOverride == true", &all_passing));
        assert!(eval("Node.Meta.env == prod", &all_passing));
        // Arrays of arrays flatten.
        let nested = json!({"G": [[{"A": 1}], [{"A": 2}]]});
        assert!(eval("G.A == 2", &nested));
        assert!(!eval("G.A == 3", &nested));
    }

    /// `not` binds tightest, then `and`, then `or`; parentheses and whitespace as expected.
    #[test]
    fn precedence_and_grouping() {
        let item = json!({"A": "1", "B": "0", "C": "1"});
        // and binds tighter than or.
        assert!(eval("A == 1 or B == 1 and C == 0", &item));
        assert!(!eval("(A == 1 or B == 1) and C == 0", &item));
        assert!(eval("B == 1 and C == 0 or A == 1", &item));
        assert!(!eval("B == 1 and (C == 0 or A == 1)", &item));
        // not binds tightest.
        assert!(!eval("not A == 1 and C == 1", &item));
        assert!(eval("not B == 1 and C == 1", &item));
        assert!(eval("not (A == 1 and B == 1)", &item));
        assert!(eval("not not A == 1", &item));
        assert!(!eval("not not not A == 1", &item));
        assert!(eval("( ( A == 1 ) )", &item));
        assert!(eval("(A == 1) and (C == 1)", &item));
        assert!(eval("\n A == 1 \t", &item));
        assert!(eval("A == 1 and B == 0 and C == 1 and not B == 1", &item));
        assert!(eval("B == 1 or B == 2 or A == 2 or C == 1", &item));
    }

    /// Keywords are only keywords where the grammar wants one: elsewhere they are names.
    #[test]
    fn keywords_as_field_names_and_values() {
        let item = json!({"not": "x", "and": "or", "in": ["is"]});
        assert!(eval("not == x", &item));
        // `not` applied to the match on the field named `not`.
        assert!(!eval("not not == x", &item));
        assert!(eval("and == or", &item));
        assert!(eval("in contains is", &item));
        // The bare value `is`, in the field named `in`.
        assert!(eval("is in in", &item));
        assert!(eval("not == x and and == or", &item));
    }

    /// As in go-bexpr, `AND` or `Is Empty` are not keywords, so these do not parse.
    #[test]
    fn keywords_are_case_sensitive() {
        for bad in [
            "A == 1 AND B == 2",
            "A == 1 Or B == 2",
            "NOT A == 1",
            "Tags CONTAINS x",
            "Tags Is Empty",
            "x IN Tags",
            "A MATCHES b",
        ] {
            assert!(
                matches!(parse_err(bad), FilterError::Syntax { .. }),
                "{bad:?}"
            );
        }
    }

    /// Incomplete, unbalanced or run-together expressions are syntax errors, never panics or
    /// partial filters.
    #[test]
    fn malformed_expressions() {
        for bad in [
            // Nothing, or half a match.
            "",
            "   ",
            "ServiceName",
            "ServiceName ==",
            "== web",
            "ServiceName = web",
            // A dangling or doubled keyword, unbalanced parentheses.
            "ServiceName == web and",
            "ServiceName == web or or x == y",
            "(ServiceName == web",
            "ServiceName == web)",
            "()",
            "Tags is",
            "Tags is not",
            "Tags contains",
            // Keywords need whitespace around them.
            "Tagscontains x",
            "Tags contains\"x\"",
            // `in` needs a selector after it, not a string.
            "x in",
            "x in \"Tags\"",
            // Bracket keys are quoted strings, right after the selector.
            "Meta[foo] == x",
            "Meta[\"foo\" == x",
            "Meta.[\"foo\"] == x",
            // Selectors start with a letter; numbers are decimal, without leading zeros.
            "1Meta == x",
            "Port == 1.2.3",
            "Port == 007",
            "Port == 5abc",
            "Port == -",
            // Keywords run into parentheses or names.
            "not(A == 1)",
            "(A == 1)and(B == 2)",
            "A == 1 andB == 2",
            // Two values, a selector starting with `_` or ending in a dot, trailing words.
            "A == \"1\" \"2\"",
            "_A == 1",
            "A.b. == 1",
            "A == b c",
        ] {
            assert!(
                matches!(parse_err(bad), FilterError::Syntax { .. }),
                "{bad:?} should be a syntax error"
            );
        }
    }

    /// Errors give line, column (in characters) and byte offset, with go-bexpr's wording and the
    /// sorted list of what was expected.
    #[test]
    fn error_messages_say_where_and_what() {
        assert_eq!(
            parse_err("ServiceName = web").to_string(),
            r#"1:13 (12): no match found, expected: "!=", "==", "contains", "in", "is", "matches", "not""#
        );
        assert_eq!(
            parse_err("ServiceName ==").to_string(),
            "1:15 (14): no match found, expected: number, selector, string"
        );
        assert_eq!(
            parse_err("A == 1\nB == 2").to_string(),
            r#"2:1 (7): no match found, expected: "and", "or", end of input"#
        );
        assert_eq!(
            parse_err(r#"A == "abc"#).to_string(),
            "1:6 (5): Unterminated string literal"
        );
        assert_eq!(
            parse_err("A == 5abc").to_string(),
            "1:6 (5): Invalid number literal"
        );
        assert_eq!(
            parse_err("Meta[foo] == x").to_string(),
            "1:6 (5): Invalid index"
        );
        assert_eq!(
            parse_err(r#"Meta["foo" == x"#).to_string(),
            "1:12 (11): Unclosed index expression"
        );
        assert_eq!(
            parse_err(r#""a" in "Tags""#).to_string(),
            "1:8 (7): Invalid selector"
        );
        assert!(
            parse_err("(A == 1 B")
                .to_string()
                .starts_with("1:9 (8): Unmatched parentheses")
        );
        // Columns count characters, offsets bytes.
        assert_eq!(
            parse_err("A == \"é\" x").to_string(),
            r#"1:10 (10): no match found, expected: "and", "or", end of input"#
        );
    }

    /// Every limit holds at its edge (accepted at the maximum, refused one past it), and the
    /// deepest trees allowed evaluate, validate and drop without exhausting the stack.
    #[test]
    fn limits() {
        let long = format!("A == \"{}\"", "x".repeat(MAX_EXPRESSION_LEN));
        assert!(matches!(
            parse_err(&long),
            FilterError::TooLong {
                max: MAX_EXPRESSION_LEN,
                ..
            }
        ));
        // `A == ` and the two backquotes take the other 7 bytes.
        let at_limit = format!("A == `{}`", "x".repeat(MAX_EXPRESSION_LEN - 7));
        assert_eq!(at_limit.len(), MAX_EXPRESSION_LEN);
        assert!(Filter::parse(&at_limit).is_ok());

        let nested = |n: usize| format!("{}A == 1{}", "(".repeat(n), ")".repeat(n));
        let item = json!({"A": 1});
        let f = Filter::parse(&nested(MAX_NESTING)).expect("maximum nesting parses");
        assert_eq!(f.matches(&item), Ok(true));
        assert!(matches!(
            parse_err(&nested(MAX_NESTING + 1)),
            FilterError::TooDeep {
                max: MAX_NESTING,
                ..
            }
        ));
        // Refused at the 257th "(", long before the input ends.
        assert!(matches!(
            parse_err(&"(".repeat(60_000)),
            FilterError::TooDeep { .. }
        ));
        let nots = |n: usize| format!("{}A == 1", "not ".repeat(n));
        assert_eq!(
            Filter::parse(&nots(MAX_NESTING)).map(|f| f.matches(&item)),
            Ok(Ok(true))
        );
        assert!(matches!(
            parse_err(&nots(MAX_NESTING + 1)),
            FilterError::TooDeep { .. }
        ));
        assert!(matches!(
            parse_err(&"not (".repeat(10_000)),
            FilterError::TooDeep { .. }
        ));
        // The deepest trees the limits allow evaluate, validate and drop within a small stack.
        let ands = |n: usize| format!("{}A == 1{}", "(A == 1 and ".repeat(n), ")".repeat(n));
        let not_ands =
            |n: usize| format!("{}A == 1{}", "not (A == 1 and ".repeat(n), ")".repeat(n));
        for expr in [ands(MAX_NESTING), not_ands(MAX_NESTING / 2)] {
            let f = Filter::parse(&expr).expect("within the limits");
            // Every level is true; an even number of `not`s cancels out.
            let expected = !expr.starts_with("not") || (MAX_NESTING / 2).is_multiple_of(2);
            assert_eq!(f.matches(&item), Ok(expected));
            assert_eq!(f.validate(&json!({"A": 0})), Ok(()));
            assert!(matches!(
                f.validate(&json!({"B": 0})),
                Err(FilterError::InvalidSelector { .. })
            ));
        }
        assert!(matches!(
            parse_err(&ands(MAX_NESTING + 1)),
            FilterError::TooDeep { .. }
        ));
        assert!(matches!(
            parse_err(&not_ands(MAX_NESTING / 2 + 1)),
            FilterError::TooDeep { .. }
        ));
        // Regexes: a bounded number, each of bounded size.
        let regexes = |n: usize| vec!["A matches `^[a-z]+$`"; n].join(" or ");
        assert!(Filter::parse(&regexes(MAX_REGEXES)).is_ok());
        assert!(matches!(
            parse_err(&regexes(MAX_REGEXES + 1)),
            FilterError::TooManyRegexes {
                max: MAX_REGEXES,
                ..
            }
        ));
        // A short pattern that compiles huge (200 Unicode word classes) hits the size limit.
        assert!(matches!(
            parse_err(r"A matches `\w{200}`"),
            FilterError::Regex { .. }
        ));
        assert!(Filter::parse(r"A matches `^[\w.-]{1,16}$`").is_ok());
        // Long flat chains do not nest.
        let chain = vec!["A == 1"; 5_000].join(" or ");
        assert_eq!(
            Filter::parse(&chain).map(|f| f.matches(&item)),
            Ok(Ok(true))
        );
        let chain = vec!["A == 1"; 5_000].join(" and ");
        assert_eq!(
            Filter::parse(&chain).map(|f| f.matches(&item)),
            Ok(Ok(true))
        );
    }

    /// Validation against a sample: unknown fields, operators the type does not take and values
    /// it cannot read are each their own error; map fields accept any key below them.
    #[test]
    fn validation_against_a_schema() {
        let schema = catalog_schema();
        for ok in [
            "ServiceName == web",
            "NodeMeta.anything == x",
            r#"ServiceMeta["any-key"] == x"#,
            "ServiceMeta.a.b == x",
            "ServiceTags contains x",
            "ServiceTags is empty",
            "ServiceMeta contains k",
            "ServiceMeta is not empty",
            "ServicePort == 80",
            "ServicePort != \"0x50\"",
            "ServiceWeights.Passing == 1",
            "ServiceEnableTagOverride == true",
            "Ratio == 1.5",
            "TaggedAddresses.lan == x",
            "ServiceName matches `^w`",
            "ServiceName is empty",
            "ServiceProxy is empty",
            "not (ServiceName == a or ServiceID == b) and ServicePort != 1",
        ] {
            assert_eq!(validate(ok, &schema), Ok(()), "{ok}");
        }
        assert_eq!(
            validate("Foo == x", &schema),
            Err(FilterError::InvalidSelector {
                selector: "Foo".into()
            })
        );
        assert_eq!(
            validate("ServiceName == x or ServiceWeights.Critical == 1", &schema)
                .map_err(|e| e.to_string()),
            Err(r#"Selector "ServiceWeights.Critical" is not valid"#.to_string())
        );
        assert_eq!(
            validate("ServiceName.x == y", &schema),
            Err(FilterError::InvalidSelector {
                selector: "ServiceName.x".into()
            })
        );
        assert_eq!(
            validate("ServiceTags.x == y", &schema),
            Err(FilterError::InvalidSelector {
                selector: "ServiceTags.x".into()
            })
        );
        assert_eq!(
            validate("ServiceTags == primary", &schema).map_err(|e| e.to_string()),
            Err(r#"Invalid match operator "Equal" for selector "ServiceTags""#.to_string())
        );
        for bad_op in [
            // Numbers and booleans take `==` and `!=` only.
            "ServicePort matches `8`",
            "ServicePort contains 8",
            "ServicePort is empty",
            "ServiceEnableTagOverride contains t",
            // An object with known fields takes no operator at all.
            "ServiceWeights == 1",
            "ServiceWeights is empty",
            // Maps take `in` and `is empty` only; arrays have no `matches`.
            "ServiceMeta == x",
            "ServiceMeta matches x",
            "ServiceTags matches x",
        ] {
            assert!(
                matches!(
                    validate(bad_op, &schema),
                    Err(FilterError::InvalidOperator { .. })
                ),
                "{bad_op}"
            );
        }
        // Values are coerced at validation too, so a bad one is refused before any data is
        // filtered.
        for bad_value in [
            "ServicePort == abc",
            "ServicePort == 1.5",
            "Ratio == x",
            "ServiceEnableTagOverride == maybe",
        ] {
            assert!(
                matches!(
                    validate(bad_value, &schema),
                    Err(FilterError::Coerce { .. })
                ),
                "{bad_value}"
            );
        }
        // Numeric element types coerce for `in`.
        let ports = json!({"Ports": [0]});
        assert_eq!(validate("80 in Ports", &ports), Ok(()));
        assert!(matches!(
            validate("http in Ports", &ports),
            Err(FilterError::Coerce { .. })
        ));
    }

    /// Validation walks arrays of objects through their sample element, as evaluation does.
    #[test]
    fn validation_through_arrays_of_objects() {
        let schema = entry_schema();
        for ok in [
            "Checks.Status == passing",
            "not Checks.Status != passing",
            "Checks.0.Status == passing",
            "Checks.ServiceTags contains x",
            "Checks is empty",
            "Service.Tags contains primary",
            "Service.Meta.version == 2",
            "Node.Meta.env == prod",
        ] {
            assert_eq!(validate(ok, &schema), Ok(()), "{ok}");
        }
        assert_eq!(
            validate("Checks.Bogus == x", &schema),
            Err(FilterError::InvalidSelector {
                selector: "Checks.Bogus".into()
            })
        );
        assert_eq!(
            validate("Service.Nope == x", &schema),
            Err(FilterError::InvalidSelector {
                selector: "Service.Nope".into()
            })
        );
        assert!(matches!(
            validate("Checks contains x", &schema),
            Err(FilterError::InvalidOperator { .. })
        ));
        assert!(matches!(
            validate("Checks == x", &schema),
            Err(FilterError::InvalidOperator { .. })
        ));
        // Unknown sample shapes accept anything.
        assert_eq!(validate("X.y.z == 1", &json!({"X": null})), Ok(()));
        assert_eq!(validate("X.y == 1", &json!({"X": []})), Ok(()));
    }

    /// `strconv.ParseInt(s, 0, 64)`'s forms, and the `uint64` range above `int64`.
    #[test]
    fn go_integer_syntax() {
        assert_eq!(parse_go_int("0"), Ok(0));
        assert_eq!(parse_go_int("-0"), Ok(0));
        // A leading 0 alone means octal, as in Go's base-0 parsing.
        assert_eq!(parse_go_int("017"), Ok(15));
        assert_eq!(parse_go_int("0o17"), Ok(15));
        assert_eq!(parse_go_int("0b101"), Ok(5));
        assert_eq!(parse_go_int("0XfF"), Ok(255));
        assert_eq!(parse_go_int("0x_ff"), Ok(255));
        assert_eq!(parse_go_int("1_000"), Ok(1000));
        assert_eq!(
            parse_go_int("-9223372036854775808"),
            Ok(i128::from(i64::MIN))
        );
        assert!(parse_go_int("-9223372036854775809").is_err());
        assert_eq!(
            parse_go_int("18446744073709551615"),
            Ok(i128::from(u64::MAX))
        );
        assert!(parse_go_int("18446744073709551616").is_err());
        for bad in [
            "", "-", "+", "0x", "08", "1_", "_1", "1__0", "1.0", "abc", " 1", "0b2",
        ] {
            assert!(parse_go_int(bad).is_err(), "{bad:?}");
        }
    }

    /// Tokens of the language and near-misses (lone quotes, brackets, escapes, non-ASCII), to
    /// build inputs that get deep into the parser before failing.
    fn token() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "(",
            ")",
            "and",
            "or",
            "not",
            "==",
            "!=",
            "in",
            "not in",
            "contains",
            "not contains",
            "matches",
            "not matches",
            "is",
            "empty",
            "is empty",
            "is not empty",
            "Service",
            "Service.Meta.k",
            "Checks.Status",
            "Checks.0.Status",
            "Tags",
            "Meta[\"a b\"]",
            "[",
            "]",
            ".",
            "\"",
            "`",
            "\\",
            "\"str\"",
            "`raw`",
            "\"(\"",
            "80",
            "-1.5",
            "0",
            "007",
            "passing",
            "true",
            "x",
            "-",
            "=",
            "!",
            "\"\\u00e9\"",
            "\"\\x\"",
            "é",
        ])
    }

    /// Between tokens: nothing, or whitespace (a space most often).
    fn separator() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["", " ", " ", " ", "\t", "\n"])
    }

    proptest! {
        #[test]
        fn parse_never_panics_on_arbitrary_strings(s in any::<String>()) {
            let _ = Filter::parse(&s);
        }

        #[test]
        fn parse_never_panics_on_ascii_noise(s in "[ -~\t\n]{0,80}") {
            let _ = Filter::parse(&s);
        }

        /// Whatever parses also validates and evaluates without panicking, on every sample.
        #[test]
        fn parse_never_panics_on_token_soup(
            parts in prop::collection::vec((token(), separator()), 0..24)
        ) {
            let expr: String = parts.iter().flat_map(|(t, sep)| [*t, *sep]).collect();
            if let Ok(filter) = Filter::parse(&expr) {
                let _ = filter.validate(&entry_schema());
                let _ = filter.validate(&catalog_schema());
                let _ = filter.matches(&service_entry(&["passing", "critical"]));
                let _ = filter.matches(&catalog_service());
                let _ = filter.matches(&Value::Null);
            }
        }

        /// `not contains` is always the negation of `contains`, on every field shape.
        #[test]
        fn well_formed_matches_parse_and_evaluate(
            field in prop::sample::select(vec!["ServiceName", "ServiceMeta.version", "ServiceTags", "NodeMeta", "Missing"]),
            value in "[a-z0-9]{0,6}",
            negate in any::<bool>(),
        ) {
            let op = if negate { "not contains" } else { "contains" };
            let expr = format!("{field} {op} \"{value}\"");
            let filter = Filter::parse(&expr);
            prop_assert!(filter.is_ok(), "{expr}");
            if let Ok(filter) = filter {
                let positive = Filter::parse(&format!("{field} contains \"{value}\""))
                    .map(|f| f.matches(&catalog_service()));
                let result = filter.matches(&catalog_service());
                if let (Ok(Ok(p)), Ok(r)) = (positive, result) {
                    prop_assert_eq!(r, p != negate);
                }
            }
        }
    }
}
