//! Long Handlebars templates cut into pieces, each compiled on its own and
//! rendered in order into one output. The handlebars parser finds the line
//! of every element by scanning from the start of its input, so one template
//! of n placeholders compiles in time n²; pieces of bounded size keep it
//! linear. This file owns where a template may be cut; it never changes
//! what a template renders.

use handlebars::{Context, Handlebars, RenderError, Template};

/// The parse cost of a template grows with its size times its number of
/// tags. Below this product a template stays whole, so an ordinary letter
/// (the example one is about 25 KB with 40 tags) renders as one template,
/// at no per-letter cost; above it, pieces are cut once their own product
/// reaches [`PIECE_COST`] (about 4 KB of dense placeholders).
const WHOLE_COST: usize = 4 << 20;
const PIECE_COST: usize = 512 << 10;

/// A piece of a template: its first line (1-based) and its text.
pub(crate) type Piece<'a> = (usize, &'a str);

/// `source` cut into pieces that each parse and render as they do inside
/// the whole. A cut is made only right after a plain `{{name}}` (or
/// `{{{name}}}`) outside every block, comment and raw block, and only where
/// it cannot change whitespace handling: the expression has no `~}}`, and
/// what follows it cannot become a standalone tag. Templates whose scope
/// crosses elements (inline partials, decorators, escaped `\{{`, raw
/// blocks) stay whole.
pub(crate) fn split(source: &str) -> Vec<Piece<'_>> {
    if source.len() * source.matches("{{").count() < WHOLE_COST {
        return vec![(1, source)];
    }
    split_every(source, PIECE_COST)
}

/// Cuts where a piece's size times its number of tags reaches `target`.
fn split_every(source: &str, target: usize) -> Vec<Piece<'_>> {
    let whole = vec![(1, source)];
    if ["\\{{", "{{{{", "{{*", "{{~*", "*inline"]
        .iter()
        .any(|s| source.contains(s))
    {
        return whole;
    }
    let mut pieces = Vec::new();
    let (mut start, mut line) = (0, 1);
    let mut depth = 0usize;
    let mut tags = 0;
    let mut at = 0;
    while let Some(k) = source[at..].find("{{") {
        let open = at + k;
        tags += 1;
        let Some(tag) = tag(&source[open..]) else {
            return whole; // unclosed: handlebars reports it on the whole
        };
        let end = open + tag.len();
        match kind(tag) {
            Kind::Open => depth += 1,
            Kind::Close => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return whole,
            },
            Kind::Simple
                if depth == 0 && (end - start) * tags >= target && cut_after(&source[end..]) =>
            {
                pieces.push((line, &source[start..end]));
                line += source[start..end].matches('\n').count();
                start = end;
                tags = 0;
            }
            _ => {}
        }
        at = end;
    }
    if start < source.len() || pieces.is_empty() {
        pieces.push((line, &source[start..]));
    }
    pieces
}

/// Whether a cut may come before `rest`: the next tag is plain, or the text
/// up to it holds a line break or something other than whitespace, so the
/// tag is standalone (or not) the same way in a piece as in the whole.
fn cut_after(rest: &str) -> bool {
    let Some(next) = rest.find("{{") else {
        return true;
    };
    let gap = &rest[..next];
    gap.contains('\n')
        || !gap.trim().is_empty()
        || tag(&rest[next..]).is_some_and(|t| kind(t) == Kind::Simple)
}

#[derive(Debug, PartialEq)]
pub(crate) enum Kind {
    /// `{{#…}}` or `{{^…}}`: opens a block.
    Open,
    /// `{{/…}}`.
    Close,
    /// `{{name}}`, `{{{name}}}`, `{{a.b}}`: a value and nothing else.
    Simple,
    Other,
}

/// The tag at the start of `s` (which starts with `{{`), braces included:
/// comments end at `--}}` or `}}`, other tags at the first `}}` outside a
/// string literal.
pub(crate) fn tag(s: &str) -> Option<&str> {
    let inner = s[2..].trim_start_matches(['{', '~']);
    let len = if inner.starts_with("!--") {
        s.find("--}}")
            .map(|e| e + 4)
            .or_else(|| s.find("--~}}").map(|e| e + 5))?
    } else if inner.starts_with('!') {
        s.find("}}")? + 2
    } else {
        let b = s.as_bytes();
        let mut i = 2;
        let mut quote = None;
        loop {
            let c = *b.get(i)?;
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if c == b'"' || c == b'\'' => quote = Some(c),
                None if c == b'}' && b.get(i + 1) == Some(&b'}') => {
                    let triple = s.starts_with("{{{") && b.get(i + 2) == Some(&b'}');
                    break i + if triple { 3 } else { 2 };
                }
                None => {}
            }
            i += 1;
        }
    };
    s.get(..len)
}

pub(crate) fn kind(tag: &str) -> Kind {
    if tag.ends_with("~}}") || tag.ends_with("~}}}") {
        return Kind::Other;
    }
    let inner = tag
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim_start_matches('~')
        .trim();
    match inner.chars().next() {
        Some('#') => Kind::Open,
        Some('^') if inner[1..].trim().is_empty() => Kind::Other, // `{{^}}` is else
        Some('^') => Kind::Open,
        Some('/') => Kind::Close,
        Some(_)
            if inner != "else"
                && inner
                    .chars()
                    .all(|c| c.is_alphanumeric() || "_-.@/[]".contains(c)) =>
        {
            Kind::Simple
        }
        _ => Kind::Other,
    }
}

/// A syntax error in a pieced template, its line counted in the whole.
#[derive(Debug)]
pub(crate) struct SyntaxError {
    pub line: usize,
    pub reason: String,
}

/// Parses `source` piece by piece: each piece's line offset (first line
/// minus one) and its compiled template.
pub(crate) fn compile(source: &str) -> Result<Vec<(usize, Template)>, SyntaxError> {
    split(source)
        .into_iter()
        .map(|(line, text)| {
            Template::compile(text)
                .map(|t| (line - 1, t))
                .map_err(|e| syntax(line, &e))
        })
        .collect()
}

fn syntax(line: usize, e: &handlebars::TemplateError) -> SyntaxError {
    SyntaxError {
        line: line - 1 + e.pos().map_or(1, |p| p.0),
        reason: e.reason().to_string(),
    }
}

/// A template registered as pieces: render them in order with one context.
#[derive(Debug, Clone)]
pub(crate) struct Pieces {
    name: String,
    /// Each piece's name in the registry, with its line offset.
    parts: Vec<(String, usize)>,
}

impl Pieces {
    /// Registers `source` in `registry` under `name` (its later pieces
    /// under `name#1`, `name#2`, …).
    pub(crate) fn register(
        registry: &mut Handlebars<'_>,
        name: &str,
        source: &str,
    ) -> Result<Pieces, SyntaxError> {
        let mut parts = Vec::new();
        for (i, (line, text)) in split(source).into_iter().enumerate() {
            let key = if i == 0 {
                name.to_string()
            } else {
                format!("{name}#{i}")
            };
            registry
                .register_template_string(&key, text)
                .map_err(|e| syntax(line, &e))?;
            parts.push((key, line - 1));
        }
        Ok(Pieces {
            name: name.to_string(),
            parts,
        })
    }

    /// How many pieces.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.parts.len()
    }

    /// Renders every piece into one string; an error names the template
    /// and its line in the whole.
    pub(crate) fn render(
        &self,
        registry: &Handlebars<'_>,
        ctx: &Context,
    ) -> Result<String, RenderError> {
        if let [(key, _)] = self.parts.as_slice() {
            return registry.render_with_context(key, ctx);
        }
        let mut out = Vec::new();
        for (key, offset) in &self.parts {
            registry
                .render_with_context_to_write(key, ctx, &mut out)
                .map_err(|mut e| {
                    if e.template_name.as_ref() == Some(key) {
                        e.template_name = Some(self.name.clone());
                        e.line_no = e.line_no.map(|l| l + offset);
                    }
                    e
                })?;
        }
        String::from_utf8(out).map_err(RenderError::from)
    }
}

/// Renders `source` once with `data`, as `Handlebars::render_template`
/// does, piece by piece.
pub(crate) fn render_once(source: &str, data: &serde_json::Value) -> Result<String, RenderError> {
    let mut registry = Handlebars::new();
    let pieces = Pieces::register(&mut registry, "once", source).map_err(|e| {
        RenderError::from(handlebars::RenderErrorReason::Other(format!(
            "line {}: {}",
            e.line, e.reason
        )))
    })?;
    pieces.render(&registry, &Context::from(data.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merge(
        source: &str,
        target: usize,
        data: serde_json::Value,
    ) -> (usize, Result<String, RenderError>) {
        let mut hb = Handlebars::new();
        let mut parts = Vec::new();
        for (i, (line, text)) in split_every(source, target).into_iter().enumerate() {
            let key = format!("p{i}");
            hb.register_template_string(&key, text).unwrap();
            parts.push((key, line - 1));
        }
        let p = Pieces {
            name: "t".into(),
            parts,
        };
        (p.parts.len(), p.render(&hb, &Context::from(data)))
    }

    fn whole(source: &str, data: &serde_json::Value) -> String {
        Handlebars::new().render_template(source, data).unwrap()
    }

    #[test]
    fn ten_thousand_placeholders_compile_fast_and_render_each_value() {
        let source = "Dear {{name}},\n".repeat(10_000);
        let start = std::time::Instant::now();
        let mut hb = Handlebars::new();
        let pieces = Pieces::register(&mut hb, "t", &source).unwrap();
        let took = start.elapsed();
        assert!(pieces.parts.len() > 1);
        // Cut in one piece it took minutes in release builds.
        let limit = if cfg!(debug_assertions) { 10.0 } else { 1.0 };
        assert!(took.as_secs_f64() < limit, "compiling took {took:?}");
        let out = pieces
            .render(&hb, &Context::from(serde_json::json!({"name": "Ann"})))
            .unwrap();
        assert_eq!(out.matches("Dear Ann,\n").count(), 10_000);
        assert_eq!(out.len(), "Dear Ann,\n".len() * 10_000);
    }

    #[test]
    fn a_block_across_the_size_is_never_cut() {
        let data = serde_json::json!({"a": "A", "vip": true, "no": false});
        let source = "{{a}} x {{#if vip}}{{a}} y {{a}} {{else}}{{a}}{{/if}} {{a}} \
                      {{#unless no}}{{a}}{{a}}{{/unless}}{{a}}\n  {{#if vip}}\n{{a}}\n{{/if}}\n{{a}}";
        for target in (1..source.len() * 30).step_by(7) {
            let (n, out) = merge(source, target, data.clone());
            assert_eq!(
                out.unwrap(),
                whole(source, &data),
                "cut every {target} bytes"
            );
            if target == 1 {
                // After the first `{{a}}` and the `{{a}}` before the line
                // break; not inside blocks, nor before ` {{#unless`, which
                // would start its piece standalone.
                assert_eq!(n, 3, "{:?}", split_every(source, 1));
            }
        }
        for (_, text) in split_every(source, 1) {
            assert_eq!(text.matches("{{#").count(), text.matches("{{/").count());
        }
    }

    #[test]
    fn comments_whitespace_control_and_standalone_tags_render_as_whole() {
        let data = serde_json::json!({"a": "A", "b": true, "l": [1, 2]});
        for source in [
            "{{a}}{{!-- {{/if}} }} --}}{{a}} {{a~}}  \n {{a}}{{~a}} {{a}}",
            "{{a}} {{#if b}}\n  x\n{{/if}}\n{{a}}\n{{#if b}}\ny\n{{/if}}\n",
            "{{a}}  {{! c }}  \n{{a}} {{{a}}} {{a}}\t{{#each l}}{{this}}\n{{/each}}",
            "{{a}} {{lookup this \"}}\"}} {{a}} '}}' {{a}}",
        ] {
            let w = Handlebars::new().render_template(source, &data).unwrap();
            for target in (1..source.len() * 20).step_by(7) {
                let (_, out) = merge(source, target, data.clone());
                assert_eq!(out.unwrap(), w, "{source:?} cut every {target}");
            }
        }
    }

    #[test]
    fn errors_name_the_line_in_the_whole() {
        let source = format!("{}{{{{#if}}\n", "{{a}} x\n".repeat(5_000));
        let e = compile(&source).unwrap_err();
        assert_eq!(e.line, 5_001, "{}", e.reason);
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        let source = format!("{}{{{{b}}}}\n", "{{a}} x\n".repeat(5_000));
        let p = Pieces::register(&mut hb, "t", &source).unwrap();
        let e = p
            .render(&hb, &Context::from(serde_json::json!({"a": 1})))
            .unwrap_err();
        assert_eq!(e.line_no, Some(5_001));
        assert_eq!(e.template_name.as_deref(), Some("t"));
    }
}
