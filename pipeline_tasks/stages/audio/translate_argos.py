"""argos-translate backend: offline translation with installed Argos language packages.

Nothing is downloaded: a missing language pair is an error that says how to install it.
"""
from __future__ import annotations

from ...errors import MissingPackageError, ModelWeightsError
from .translate_base import Translator


def _install_hint(source: str, target: str) -> str:
    return (f"install the Argos package on this machine: `argospm update && argospm install "
            f"translate-{source}_{target}` where the Argos package index is reachable, or copy a "
            f"translate-{source}_{target}-*.argosmodel file here and run `python -c \"import "
            f"argostranslate.package as p; p.install_from_path('FILE.argosmodel')\"`; packages are stored in "
            f"$ARGOS_PACKAGES_DIR (default ~/.local/share/argos-translate/packages). Or use backend: "
            f"transformers with a local MarianMT/NLLB model directory")


class ArgosTranslator(Translator):
    name = "argos"
    packages = ("argostranslate",)

    def check(self) -> None:
        try:
            import argostranslate.package as package
        except ImportError as exc:
            raise MissingPackageError("backend argos needs argos-translate: pip install argostranslate",
                                   stage=self.stage, key="backend") from exc
        installed = package.get_installed_packages()
        pairs = sorted({f"{p.from_code}->{p.to_code}" for p in installed})
        direct = any(p.from_code == self.source and p.to_code == self.target for p in installed)
        via_en = (any(p.from_code == self.source and p.to_code == "en" for p in installed)
                  and any(p.from_code == "en" and p.to_code == self.target for p in installed))
        if not (direct or via_en):
            from argostranslate import settings

            raise ModelWeightsError(
                f"no argos-translate language package for {self.source}->{self.target} is installed "
                f"(installed: {', '.join(pairs) or 'none'}; looked in {settings.package_data_dir})",
                path=str(settings.package_data_dir), stage=self.stage, key="target_languages",
                hint=_install_hint(self.source, self.target))

    def load(self) -> None:
        import argostranslate.translate as translate

        langs = {lang.code: lang for lang in translate.get_installed_languages()}
        translation = langs[self.source].get_translation(langs[self.target]) if self.source in langs and \
            self.target in langs else None
        if translation is None:
            raise ModelWeightsError(f"argos-translate cannot translate {self.source}->{self.target}",
                                    stage=self.stage, key="target_languages",
                                    hint=_install_hint(self.source, self.target))
        self._translation = translation

    def translate_batch(self, texts: list[str]) -> list[str]:
        return [self._translation.translate(t) if t.strip() else "" for t in texts]
