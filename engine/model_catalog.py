"""Base models worth starting from, per family, with what each needs: the Train tab's picker reads this.

Sizes are the models' own (their configs on the Hugging Face hub, 2026-12); the GPU memory is `memory_fit`'s
estimate for an adapter at batch 16 and length 128 in bf16, the same arithmetic that refuses a run that cannot
fit. Any other hub id or model folder of a supported architecture works too; these are the ones we would pick.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.base_models import DEFAULT_BASE_MODEL
from engine.memory_fit import estimate


@dataclass(frozen=True)
class CatalogModel:
    id: str
    family: str  # "encoder" or "decoder LLM"
    title: str
    parameters: int
    hidden_size: int
    layers: int
    languages: str
    note: str = ""

    def gpu_gb(self) -> float:
        return estimate(self.parameters, self.hidden_size, self.layers, True, 16, 128).training_gb

    def label(self, offline: bool) -> str:
        """One line of the picker: the GPU memory is for an adapter at batch 16 and 128 tokens (the picker's
        help says so)."""
        size = f"{self.parameters / 1e9:.1f}B" if self.parameters >= 1e9 else f"{self.parameters / 1e6:.0f}M"
        parts = [self.title, self.family, size, self.languages, f"~{self.gpu_gb():.1f} GB GPU", self.note,
                 "" if offline else "download needed"]
        return " · ".join(p for p in parts if p)


CATALOG = (
    CatalogModel(DEFAULT_BASE_MODEL, "encoder", "all-MiniLM-L6-v2 (bundled)", 22_713_216, 384, 6, "English",
                 "small and fast, works offline"),
    CatalogModel("bert-base-uncased", "encoder", "BERT base", 109_482_240, 768, 12, "English"),
    CatalogModel("roberta-base", "encoder", "RoBERTa base", 124_645_632, 768, 12, "English"),
    CatalogModel("microsoft/deberta-v3-base", "encoder", "DeBERTa-v3 base", 183_831_552, 768, 12, "English",
                 "among the strongest classifiers of its size"),
    CatalogModel("microsoft/mdeberta-v3-base", "encoder", "mDeBERTa-v3 base", 278_218_752, 768, 12,
                 "100 languages"),
    CatalogModel("xlm-roberta-base", "encoder", "XLM-RoBERTa base", 278_043_648, 768, 12, "100 languages"),
    CatalogModel("answerdotai/ModernBERT-base", "encoder", "ModernBERT base", 149_014_272, 768, 22,
                 "English and code", "texts up to 8,192 tokens"),
    CatalogModel("answerdotai/ModernBERT-large", "encoder", "ModernBERT large", 394_781_696, 1024, 28,
                 "English and code", "texts up to 8,192 tokens"),
    CatalogModel("Qwen/Qwen2.5-0.5B", "decoder LLM", "Qwen2.5 0.5B", 494_032_768, 896, 24, "29 languages",
                 "LoRA or IA3"),
    CatalogModel("Qwen/Qwen2.5-1.5B", "decoder LLM", "Qwen2.5 1.5B", 1_543_714_304, 1536, 28, "29 languages",
                 "LoRA or IA3"),
    CatalogModel("meta-llama/Llama-3.2-1B", "decoder LLM", "Llama 3.2 1B", 1_235_814_400, 2048, 16,
                 "8 languages", "gated: accept its licence on the hub first"),
    CatalogModel("google/gemma-2-2b", "decoder LLM", "Gemma 2 2B", 2_614_341_888, 2304, 26, "English",
                 "gated: accept its licence on the hub first"),
)
