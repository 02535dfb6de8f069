<?php

declare(strict_types=1);

namespace LiveComments;

/**
 * The payload transformation of the BladeRunner design: each viewer gets a
 * comment in their language (a small word table stands in for a translation
 * service) and HTML-escaped, ready to insert in a page.
 */
final class Transform
{
    public const LANGS = ['en', 'fr', 'es', 'de'];

    /** English word => [fr, es, de]. */
    private const WORDS = [
        'hello' => ['bonjour', 'hola', 'hallo'],
        'hi' => ['salut', 'hola', 'hallo'],
        'thanks' => ['merci', 'gracias', 'danke'],
        'great' => ['génial', 'genial', 'toll'],
        'goal' => ['but', 'gol', 'tor'],
        'love' => ['adore', 'encanta', 'liebe'],
        'yes' => ['oui', 'sí', 'ja'],
        'no' => ['non', 'no', 'nein'],
        'good' => ['bon', 'bueno', 'gut'],
        'nice' => ['sympa', 'bonito', 'schön'],
        'amazing' => ['incroyable', 'increíble', 'erstaunlich'],
        'world' => ['monde', 'mundo', 'welt'],
        'video' => ['vidéo', 'vídeo', 'video'],
        'everyone' => ['tout le monde', 'todos', 'alle'],
        'while' => ['pendant', 'mientras', 'während'],
        'away' => ['absent', 'fuera', 'weg'],
        'you' => ['vous', 'tú', 'du'],
        'were' => ['étiez', 'estabas', 'warst'],
    ];

    /** The first supported language of params.lang, else Accept-Language, else "en". */
    public static function pickLang(mixed $param, ?string $acceptLanguage): string
    {
        if (is_string($param) && in_array(strtolower($param), self::LANGS, true)) {
            return strtolower($param);
        }
        foreach (explode(',', (string) $acceptLanguage) as $part) {
            $code = strtolower(substr(trim($part), 0, 2));
            if (in_array($code, self::LANGS, true)) {
                return $code;
            }
        }
        return 'en';
    }

    public static function translate(string $text, string $lang): string
    {
        $col = array_search($lang, self::LANGS, true);
        if ($col === false || $col === 0) {
            return $text;
        }
        return (string) preg_replace_callback('/\p{L}+/u', static function (array $m) use ($col): string {
            $word = $m[0];
            $to = self::WORDS[strtolower($word)][$col - 1] ?? null;
            if ($to === null) {
                return $word;
            }
            // Keep a leading capital ("Hello" -> "Bonjour"; ASCII letters only,
            // as this example does without the mbstring extension).
            return preg_match('/^[A-Z]/', $word) === 1 ? ucfirst($to) : $to;
        }, $text);
    }

    /**
     * A stored comment as one viewer sees it.
     *
     * @param array{id:string,user:string,text:string,at:int} $comment
     * @return array{id:string,user:string,html:string,lang:string,at:int}
     */
    public static function forViewer(array $comment, string $lang): array
    {
        $escape = static fn (string $s): string => htmlspecialchars($s, ENT_QUOTES | ENT_SUBSTITUTE | ENT_HTML5, 'UTF-8');
        return [
            'id' => $comment['id'],
            'user' => $escape($comment['user']),
            'html' => $escape(self::translate($comment['text'], $lang)),
            'lang' => $lang,
            'at' => $comment['at'],
        ];
    }
}
