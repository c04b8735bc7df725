//! Word lists used by the rule-based splitter. All lookups take ASCII-lower-cased bytes (for
//! abbreviations) or the word as written (for sentence starters).

/// How an abbreviation followed by a period behaves before the next word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Abbrev {
    /// Titles and the like that precede a name: "Mr. Smith", "Mt. Fuji", "St. Michael". Not a
    /// boundary before a number or a capitalised word, unless that word commonly starts a
    /// sentence ("... the FT. But").
    Prepositive,
    /// Connectives that always continue the sentence: "vs. Jones", "e.g. Paris", "cf. Smith".
    Connective,
    /// Used before numbers: "No. 5", "p. 55", "Fig. 3", "Jan. 12". Not a boundary before a
    /// number; before a capitalised word it is an ordinary word ("He said no. Then ...").
    Numeric,
    /// Ends a phrase: "Co.", "Inc.", "Jr.", "etc.". Not a boundary before a number or a
    /// capitalised word, unless that word commonly starts a sentence ("... & Co. It closed").
    Other,
}

/// Classify `lower` (the token before the period, ASCII lower-cased, without the period).
pub fn abbreviation(lower: &[u8]) -> Option<Abbrev> {
    use Abbrev::*;
    Some(match lower {
        // titles, ranks, places before a name
        b"mr" | b"mrs" | b"ms" | b"messrs" | b"mme" | b"mlle" | b"dr" | b"prof" | b"rev" | b"hon" | b"fr" | b"st"
        | b"mt" | b"ft" | b"gen" | b"gov" | b"sen" | b"sens" | b"rep" | b"reps" | b"capt" | b"col" | b"lt" | b"sgt"
        | b"cpl" | b"pvt" | b"maj" | b"adm" | b"cmdr" | b"cdr" | b"brig" | b"supt" | b"insp" | b"pres" | b"supr"
        | b"amb" | b"atty" => Prepositive,
        // Latin and connective abbreviations that continue the sentence
        b"vs" | b"v" | b"cf" | b"viz" | b"approx" | b"ca" | b"incl" | b"esp" | b"resp" | b"sc" | b"e.g" | b"i.e"
        | b"a.k.a" | b"aka" => Connective,
        // before numbers
        b"no" | b"nos" | b"nr" | b"n\xc2\xb0" | b"art" | b"arts" | b"fig" | b"figs" | b"vol" | b"vols" | b"p"
        | b"pp" | b"ch" | b"chap" | b"sec" | b"secs" | b"para" | b"paras" | b"tel" | b"op" | b"ex" | b"eq" | b"eqs"
        | b"ref" | b"refs" | b"tab" | b"pt" | b"pts" | b"ed" | b"eds" | b"ps" | b"ver" | b"jan" | b"feb" | b"mar"
        | b"apr" | b"jun" | b"jul" | b"aug" | b"sep" | b"sept" | b"oct" | b"nov" | b"dec" | b"mon" | b"tue"
        | b"tues" | b"wed" | b"thu" | b"thur" | b"thurs" | b"fri" | b"sat" | b"sun" => Numeric,
        // phrase-final abbreviations
        b"co" | b"jr" | b"sr" | b"corp" | b"inc" | b"ltd" | b"plc" | b"llc" | b"bros" | b"assn" | b"assoc"
        | b"dept" | b"univ" | b"inst" | b"intl" | b"natl" | b"govt" | b"mfg" | b"etc" | b"al" | b"ave" | b"blvd"
        | b"rd" | b"hwy" | b"pkwy" | b"sq" | b"esq" | b"est" | b"dist" | b"div" | b"misc" | b"min" | b"max" | b"hr"
        | b"hrs" | b"mins" | b"yr" | b"yrs" | b"mo" | b"mos" | b"wk" | b"wks" | b"oz" | b"lb" | b"lbs" | b"km"
        | b"mi" | b"kg" | b"cm" | b"mm" | b"ala" | b"ariz" | b"calif" | b"colo" | b"conn" | b"fla" | b"ga" | b"ky"
        | b"md" | b"mich" | b"minn" | b"neb" | b"nev" | b"okla" | b"penn" | b"tenn" | b"tex" | b"va" | b"vt"
        | b"wis" | b"wyo" | b"dak" => Other,
        _ => return None,
    })
}

/// Capitalised words that commonly begin an English sentence. After an abbreviation or an
/// initial, a following capitalised word starts a new sentence only if it is one of these.
pub fn is_sentence_starter(word: &[u8]) -> bool {
    matches!(
        word,
        b"A" | b"An"
            | b"The"
            | b"This"
            | b"That"
            | b"These"
            | b"Those"
            | b"There"
            | b"Here"
            | b"It"
            | b"Its"
            | b"I"
            | b"We"
            | b"You"
            | b"He"
            | b"She"
            | b"They"
            | b"My"
            | b"Our"
            | b"Your"
            | b"His"
            | b"Her"
            | b"Their"
            | b"Some"
            | b"Many"
            | b"Most"
            | b"All"
            | b"Each"
            | b"Every"
            | b"Both"
            | b"No"
            | b"Not"
            | b"Yes"
            | b"But"
            | b"And"
            | b"Or"
            | b"So"
            | b"Yet"
            | b"If"
            | b"When"
            | b"While"
            | b"Where"
            | b"What"
            | b"Who"
            | b"Why"
            | b"How"
            | b"Which"
            | b"Whether"
            | b"After"
            | b"Before"
            | b"Since"
            | b"Because"
            | b"Although"
            | b"Though"
            | b"However"
            | b"Meanwhile"
            | b"Moreover"
            | b"Instead"
            | b"Still"
            | b"Then"
            | b"Now"
            | b"Today"
            | b"Yesterday"
            | b"Also"
            | b"Even"
            | b"In"
            | b"On"
            | b"At"
            | b"As"
            | b"For"
            | b"From"
            | b"With"
            | b"By"
            | b"To"
            | b"Is"
            | b"Are"
            | b"Was"
            | b"Were"
            | b"Do"
            | b"Does"
            | b"Did"
            | b"Has"
            | b"Have"
            | b"Had"
            | b"Can"
            | b"Could"
            | b"Will"
            | b"Would"
            | b"Should"
            | b"Might"
            | b"Must"
            | b"Let"
            | b"Please"
            | b"Thank"
            | b"Thanks"
            | b"One"
            | b"Two"
            | b"Three"
    )
}
